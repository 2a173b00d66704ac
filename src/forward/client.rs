//! The upstream client: one HTTP/2 connection pool (`https://` over rustls, `http://` as h2c),
//! each batch sent as the batcher laid it out (`send.rs`: span runs handed to HTTP/2 as references), bounded concurrency, and
//! retry with exponential backoff and jitter.
//!
//! The access token leaves in `lightstep-access-token` metadata and (already written by the
//! batcher) in `auth.access_token`; it is never logged.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::{debug, info, warn};

use super::error::{ErrorSource, ForwardError};
use super::send;
use crate::pipeline::{Arena, Batch, BatchSink, Part};
use crate::telemetry::{self, DropReason};

/// How to reach the upstream, from configuration.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `https://host:port` (TLS) or `http://host:port` (h2c).
    pub url: http::Uri,
    /// Extra PEM CA bundle to trust besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Deadline of one upstream request (sent as `grpc-timeout`).
    pub request_timeout: Duration,
    /// Deadline to establish a connection.
    pub connect_timeout: Duration,
    /// Upstream requests in flight at once.
    pub concurrency: usize,
    /// Give up retrying a batch after this long.
    pub retry_max_elapsed: Duration,
}

/// Why the upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The URL is not usable as an endpoint.
    #[error("upstream URL {url}: {source}")]
    Endpoint {
        /// The URL.
        url: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// Where the upstream's TLS trust anchors come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaRoots {
    /// Plaintext upstream (`http://`): no TLS.
    None,
    /// The system's CA store (`/etc/ssl/certs`, or `SSL_CERT_FILE`/`SSL_CERT_DIR`), this many.
    System(usize),
    /// The system has none (a `scratch` image): the Mozilla roots compiled into the binary
    /// (`webpki-roots`).
    Compiled,
}

impl CaRoots {
    /// Looks at the system store once: its roots, else the compiled-in ones.
    fn detect() -> CaRoots {
        let found = rustls_native_certs::load_native_certs();
        match found.certs.len() {
            0 => {
                warn!(
                    errors = found.errors.len(),
                    "no system CA roots found; verifying the upstream with the compiled-in Mozilla roots (webpki-roots)"
                );
                CaRoots::Compiled
            }
            n => CaRoots::System(n),
        }
    }

    /// How `/diagnostics` shows it.
    pub fn describe(self) -> String {
        match self {
            CaRoots::None => "none (plaintext upstream)".to_owned(),
            CaRoots::System(n) => format!("system ({n} certificates)"),
            CaRoots::Compiled => "compiled-in Mozilla roots (webpki-roots)".to_owned(),
        }
    }
}

/// The last failure talking to the upstream, for `/diagnostics`.
#[derive(Debug, Clone)]
pub struct LastError {
    /// When it happened.
    pub at: SystemTime,
    /// The gRPC code label (`unavailable`, `unauthenticated`, ...).
    pub code: &'static str,
    /// What the upstream or the connection said (never holds the token).
    pub message: String,
}

/// An error and its sources on one line: tonic's transport errors say little at the top.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Whether the upstream is reachable (the upstream's half of readiness), its last error and
/// the trust anchors in use.
#[derive(Debug)]
pub struct UpstreamHealth {
    up: AtomicBool,
    gauge: metrics::Gauge,
    last_error: Mutex<Option<LastError>>,
    ca_roots: CaRoots,
}

impl UpstreamHealth {
    fn new(ca_roots: CaRoots) -> Self {
        let gauge = metrics::gauge!(telemetry::UPSTREAM_UP);
        gauge.set(0.0);
        Self {
            up: AtomicBool::new(false),
            gauge,
            last_error: Mutex::new(None),
            ca_roots,
        }
    }

    /// True after a successful connect or request, until a connection-level failure.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The most recent failed attempt or probe, if any.
    pub fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().map(|e| e.clone()).unwrap_or(None)
    }

    /// Where the TLS roots for the upstream come from.
    pub fn ca_roots(&self) -> CaRoots {
        self.ca_roots
    }

    fn record_error(&self, code: &'static str, message: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(LastError {
                at: SystemTime::now(),
                code,
                message,
            });
        }
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            self.gauge.set(if up { 1.0 } else { 0.0 });
            if up {
                info!("upstream reachable");
            } else {
                warn!("upstream unreachable; buffering and retrying");
            }
        }
    }
}

/// The upstream exporter: a [`BatchSink`] that sends each batch with retries.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    channel: Channel,
    settings: UpstreamSettings,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    health: Arc<UpstreamHealth>,
    abort: CancellationToken,
    /// Spans the upstream accepted, for the shutdown report.
    delivered: AtomicU64,
    /// Spans abandoned because `abort` fired, for the shutdown report.
    aborted: AtomicU64,
    /// The ring's region, which a batch leaves before it waits to be retried.
    region: Option<Arena>,
}

impl Upstream {
    /// Builds the client (connecting lazily). Sends run on `tasks`; `abort` ends them at once;
    /// a batch to be retried first moves out of the ring's `region` (so it never holds the
    /// ring's head through its backoff).
    pub fn new(
        settings: UpstreamSettings,
        tasks: TaskTracker,
        abort: CancellationToken,
        region: Option<Arena>,
    ) -> Result<Self, UpstreamError> {
        let url = crate::diagnostics::redact_url(&settings.url);
        let endpoint_error = |source| UpstreamError::Endpoint {
            url: url.clone(),
            source,
        };
        let mut endpoint = Endpoint::from(settings.url.clone())
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let mut ca_roots = CaRoots::None;
        if settings.url.scheme_str() == Some("https") {
            ca_roots = CaRoots::detect();
            let mut tls = match ca_roots {
                CaRoots::Compiled => ClientTlsConfig::new().with_webpki_roots(),
                _ => ClientTlsConfig::new().with_native_roots(),
            };
            if let Some(pem) = &settings.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(tls).map_err(endpoint_error)?;
        }
        let channel = endpoint.connect_lazy();
        Ok(Upstream {
            inner: Arc::new(Inner {
                endpoint,
                channel,
                slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
                settings,
                tasks,
                health: Arc::new(UpstreamHealth::new(ca_roots)),
                abort,
                delivered: AtomicU64::new(0),
                aborted: AtomicU64::new(0),
                region,
            }),
        })
    }

    /// Spans the upstream has accepted so far.
    pub fn delivered_spans(&self) -> u64 {
        self.inner.delivered.load(Ordering::Acquire)
    }

    /// Spans abandoned so far because the drain timeout ended.
    pub fn aborted_spans(&self) -> u64 {
        self.inner.aborted.load(Ordering::Acquire)
    }

    /// Counts a batch abandoned at the drain timeout as dropped, unless it is spooled: then
    /// it stays on disk for the next start.
    fn count_aborted(&self, batch: &Batch) {
        if batch.spooled.is_spooled() {
            return;
        }
        let spans = u64::from(batch.spans);
        self.inner.aborted.fetch_add(spans, Ordering::AcqRel);
        telemetry::count_dropped(DropReason::Shutdown, spans);
    }

    /// The upstream's reachability, for readiness.
    pub fn health(&self) -> Arc<UpstreamHealth> {
        self.inner.health.clone()
    }

    /// Probes the upstream every `every` while it is marked down, until `stop`.
    pub async fn watch_health(self, every: Duration, stop: CancellationToken) {
        loop {
            if !self.inner.health.is_up() {
                match self.inner.endpoint.connect().await {
                    Ok(_) => self.inner.health.mark(true),
                    Err(error) => {
                        debug!(%error, "upstream probe failed");
                        self.inner
                            .health
                            .record_error("unavailable", error_chain(&error));
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn deliver(self, batch: Batch, _slot: OwnedSemaphorePermit) {
        let spans = u64::from(batch.spans);
        let mut batch = Arc::new(batch);
        let mut delays = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(self.inner.settings.retry_max_elapsed))
            .build();
        let retried = async {
            loop {
                match self.attempt(batch.clone()).await {
                    Err(error) if error.retry_allowed() => {
                        let Some(wait) = delays.next() else {
                            return Err(error);
                        };
                        debug!(code = error.code_label(), message = %error.message, ?wait, "retrying upstream batch");
                        if let Some(region) = &self.inner.region {
                            // The request's body may still hold the batch for a moment; then
                            // it moves before the next retry instead.
                            if let Some(batch) = Arc::get_mut(&mut batch) {
                                batch.move_out_of(region);
                            }
                        }
                        tokio::time::sleep(wait).await;
                    }
                    result => return result,
                }
            }
        };
        let result = tokio::select! {
            result = retried => result,
            _ = self.inner.abort.cancelled() => {
                self.count_aborted(&batch);
                return;
            }
        };
        match result {
            Ok(reply) => {
                let rejected = batch.key.protocol.rejected_spans(reply, spans);
                self.inner
                    .delivered
                    .fetch_add(spans - rejected, Ordering::AcqRel);
                metrics::counter!(telemetry::SPANS_FORWARDED).increment(spans - rejected);
                telemetry::count_dropped(DropReason::UpstreamRejected, rejected);
            }
            Err(error) if error.retry_allowed() && batch.spooled.return_to_spool() => {
                warn!(code = error.code_label(), message = %error.message, spans, "upstream batch returned to the spool: retries exhausted; it is read back later");
            }
            Err(error) if error.retry_allowed() => {
                warn!(code = error.code_label(), message = %error.message, spans, "upstream batch dropped: retries exhausted");
                telemetry::count_dropped(DropReason::RetryExhausted, spans);
            }
            Err(error) => {
                warn!(code = error.code_label(), message = %error.message, spans, "upstream refused batch; dropped");
                telemetry::count_dropped(DropReason::UpstreamRejected, spans);
            }
        }
    }

    async fn attempt(&self, batch: Arc<Batch>) -> Result<Bytes, ForwardError> {
        let started = Instant::now();
        let result = self.call(batch).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) if e.retry_allowed() => "retry",
            Err(_) => "rejected",
        };
        metrics::histogram!(telemetry::UPSTREAM_REQUEST_SECONDS, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(telemetry::UPSTREAM_REQUESTS, "outcome" => outcome).increment(1);
        match &result {
            Ok(_) => self.inner.health.mark(true),
            Err(error) => {
                metrics::counter!(telemetry::UPSTREAM_ERRORS, "code" => error.code_label())
                    .increment(1);
                self.inner
                    .health
                    .record_error(error.code_label(), error.message.clone());
                if error.origin == ErrorSource::Connection || error.code == Code::Unavailable {
                    self.inner.health.mark(false);
                }
            }
        }
        result
    }

    async fn call(&self, batch: Arc<Batch>) -> Result<Bytes, ForwardError> {
        send::unary(
            self.inner.channel.clone(),
            batch,
            self.inner.settings.request_timeout,
        )
        .await
    }
}

impl BatchSink for Upstream {
    async fn submit(&self, mut batch: Batch) {
        // Waiting for a slot here is the backpressure that keeps the buffer (not the number of
        // in-flight requests) as the place where data waits.
        let slot = tokio::select! {
            slot = self.inner.slots.clone().acquire_owned() => slot,
            _ = self.inner.abort.cancelled() => {
                self.count_aborted(&batch);
                return;
            }
        };
        let Ok(slot) = slot else {
            return;
        };
        batch.charge.move_to(Part::Upstream);
        self.inner.tasks.spawn(self.clone().deliver(batch, slot));
    }
}
