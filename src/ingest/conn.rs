//! Accepting connections, for ingest and admin alike: the connection limit, the TLS handshake,
//! protocol detection, every connection timeout, and serving HTTP/1.1 and HTTP/2 on one socket.
//!
//! The protocol is chosen per connection: the first bytes are read under
//! `protocol-detect-timeout` and compared with the HTTP/2 preface ([`detect`]), then replayed
//! into hyper-util's auto builder; under TLS, ALPN offers `h2` and `http/1.1`. A connection is
//! closed gracefully (GOAWAY, or `Connection: close` after the current response) when it has
//! had no request in flight for its idle timeout, when it reaches `max-connection-age`, or on
//! shutdown; one that still has requests in flight after the matching grace period is dropped.
//! Request bodies must keep up `body-min-rate` ([`activity`]). Every close is counted by
//! reason, and accept errors (EMFILE) are logged at most once per interval with a count.

/// Implements `AsyncWrite` for a read-side wrapper `$wrapper<I>` by passing every call to its
/// `inner` stream: the wrappers below only watch or replay what is read.
macro_rules! delegate_async_write {
    ($wrapper:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<I> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

pub mod activity;
pub mod detect;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use self::activity::{Activity, MinRate, MinRateBody, ReadMarker, TrackedBody};
use self::detect::{Detected, Rewind};
use crate::telemetry;

/// Limits and timeouts of one listener's connections, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Open connections allowed on the listener; more are closed at once and counted.
    pub max_connections: usize,
    /// Time a client gets to finish the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time from accept (or the TLS handshake) until the first bytes tell the protocol.
    pub protocol_detect_timeout: Duration,
    /// HTTP/1: time to receive a request's headers, from their first byte.
    pub header_read_timeout: Duration,
    /// HTTP/1: a kept-alive connection with no request for this long is closed.
    pub http1_idle_timeout: Duration,
    /// HTTP/2: a connection with no open stream for this long gets GOAWAY.
    pub http2_idle_timeout: Duration,
    /// HTTP/2: PING interval; a peer that does not answer within the keepalive timeout is
    /// closed. `None` sends no pings.
    pub http2_keepalive_interval: Option<Duration>,
    /// HTTP/2: how long to wait for a PING's answer.
    pub http2_keepalive_timeout: Duration,
    /// The minimum rate of request bodies.
    pub body_min_rate: MinRate,
    /// Connections older than this (give or take 10%, so a pool does not reconnect at once)
    /// are closed gracefully; `None` lets them live.
    pub max_connection_age: Option<Duration>,
    /// Time in-flight requests get after `max_connection_age` before the connection is dropped.
    pub max_connection_age_grace: Duration,
    /// Time in-flight requests get after shutdown begins before their connection is dropped.
    pub shutdown_grace: Duration,
    /// The memory budget (`--buffer-bytes`): HTTP/2 flow-control windows are sized from it.
    pub budget_bytes: usize,
}

/// Concurrent HTTP/2 streams per connection (what Envoy and gRPC servers allow by default).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// HTTP/2 flow-control windows (connection, stream) for a `budget_bytes` budget: the
/// connection window 1/64 of the budget (64 KiB to 4 MiB), a stream a quarter of it, so
/// what a client may send unasked stays a small share of the budget.
pub fn h2_windows(budget_bytes: usize) -> (u32, u32) {
    let connection = (budget_bytes / 64).clamp(64 << 10, 4 << 20);
    let stream = (connection / 4).max(64 << 10);
    (connection as u32, stream as u32)
}

impl ConnLimits {
    /// The ingest defaults (also the config defaults).
    pub const INGEST: ConnLimits = ConnLimits {
        max_connections: 10_000,
        tls_handshake_timeout: Duration::from_secs(10),
        protocol_detect_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
        http1_idle_timeout: Duration::from_secs(60),
        http2_idle_timeout: Duration::from_secs(60),
        http2_keepalive_interval: Some(Duration::from_secs(30)),
        http2_keepalive_timeout: Duration::from_secs(10),
        body_min_rate: MinRate {
            bytes_per_second: 256,
            grace: Duration::from_secs(10),
        },
        max_connection_age: None,
        max_connection_age_grace: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(5),
        budget_bytes: 256 << 20,
    };

    /// The admin listener: few connections, short timeouts (the ingest body rate, no age).
    pub fn admin(ingest: &ConnLimits, max_connections: usize) -> ConnLimits {
        ConnLimits {
            max_connections,
            protocol_detect_timeout: ingest.protocol_detect_timeout.min(Duration::from_secs(5)),
            header_read_timeout: ingest.header_read_timeout.min(Duration::from_secs(5)),
            http1_idle_timeout: ingest.http1_idle_timeout.min(Duration::from_secs(30)),
            http2_idle_timeout: ingest.http2_idle_timeout.min(Duration::from_secs(30)),
            max_connection_age: None,
            shutdown_grace: Duration::from_secs(1),
            ..*ingest
        }
    }
}

/// Why a connection was closed by cubesat: the closed label set of
/// [`telemetry::CONNECTIONS_CLOSED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The TLS handshake failed or took too long.
    TlsHandshake,
    /// The first bytes did not arrive within `protocol-detect-timeout`.
    DetectTimeout,
    /// An HTTP/1 request's headers did not arrive within `header-read-timeout`.
    HeaderTimeout,
    /// No request in flight for the idle timeout.
    Idle,
    /// `max-connection-age` reached.
    MaxAge,
    /// Shutdown.
    Shutdown,
    /// Requests were still in flight when the grace period ended.
    GraceExpired,
}

impl CloseReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TlsHandshake => "tls_handshake",
            CloseReason::DetectTimeout => "detect_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Idle => "idle",
            CloseReason::MaxAge => "max_age",
            CloseReason::Shutdown => "shutdown",
            CloseReason::GraceExpired => "grace_expired",
        }
    }
}

fn count_close(listener: &'static str, reason: CloseReason) {
    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "listener" => listener, "reason" => reason.as_str())
        .increment(1);
}

/// Serves `app` on `listener` (through `tls` when given) until `shutdown`, then closes every
/// connection within `limits.shutdown_grace`. `role` names the listener in logs and metrics.
pub async fn serve(
    role: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header timeout is ours (`Activity::head_overdue`): hyper's starts as soon as a
    // kept-alive connection waits, so it would close idle connections after it, not the idle one.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    let (connection_window, stream_window) = h2_windows(limits.budget_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .initial_connection_window_size(connection_window)
        .initial_stream_window_size(stream_window)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    let builder = Arc::new(builder);
    let connections = TaskTracker::new();
    let open = metrics::gauge!(telemetry::CONNECTIONS_OPEN, "listener" => role);
    let refused = metrics::counter!(telemetry::CONNECTIONS_REFUSED, "listener" => role);
    let mut accept_errors = AcceptErrors::new(role);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: the pending connection stays queued; back off
                    // instead of spinning, and log a summary rather than every failure.
                    accept_errors.record(&error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.increment(1);
            debug!(%peer, listener = role, "connection refused: max-connections reached");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            role,
            builder: builder.clone(),
            app: app.clone(),
            limits,
            shutdown: shutdown.clone(),
        };
        let (tls, open) = (tls.clone(), open.clone());
        connections.spawn(async move {
            open.increment(1.0);
            match tls {
                None => connection.run(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(
                        limits.tls_handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => connection.run(stream).await,
                        Ok(Err(error)) => {
                            count_close(role, CloseReason::TlsHandshake);
                            debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => {
                            count_close(role, CloseReason::TlsHandshake);
                            debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
            open.decrement(1.0);
            drop(slot);
        });
    }
    drop(listener);
    // Each connection closes itself within its shutdown grace: this wait is bounded.
    connections.close();
    connections.wait().await;
}

/// One accepted connection and what it needs to be served.
struct Connection {
    role: &'static str,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: axum::Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
}

impl Connection {
    async fn run<I>(self, mut io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = self.limits;
        let detected = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            read = tokio::time::timeout(limits.protocol_detect_timeout, detect::read_prefix(&mut io)) => read,
        };
        let (version, prefix) = match detected {
            Ok(Ok((Detected::Closed, _))) | Ok(Err(_)) => return,
            Ok(Ok(detected)) => detected,
            Err(_) => {
                count_close(self.role, CloseReason::DetectTimeout);
                debug!(
                    listener = self.role,
                    "no request within protocol-detect-timeout"
                );
                return;
            }
        };
        let idle_timeout = match version {
            Detected::Http2 => limits.http2_idle_timeout,
            _ => limits.http1_idle_timeout,
        };
        let activity = Activity::new();
        let service = {
            let (app, activity, rate) = (self.app, activity.clone(), limits.body_min_rate);
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                let request = request.map(|body| Body::new(MinRateBody::new(body, rate)));
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await?;
                    Ok::<_, Infallible>(
                        response.map(|body| Body::new(TrackedBody::new(body, in_flight))),
                    )
                }
            })
        };
        let http1 = version != Detected::Http2;
        let io = ReadMarker::new(Rewind::new(prefix, io), http1.then(|| activity.clone()));
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let age = limits
            .max_connection_age
            .map(|age| Instant::now() + jittered(age));
        // Set once a graceful close has begun: when in-flight requests are abandoned.
        let mut closing: Option<Instant> = None;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        debug!(%error, listener = self.role, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if closing.is_none() => {
                    count_close(self.role, CloseReason::Shutdown);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + limits.shutdown_grace);
                }
                _ = sleep_until_some(age), if closing.is_none() => {
                    count_close(self.role, CloseReason::MaxAge);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now() + limits.max_connection_age_grace);
                }
                _ = activity.head_overdue(limits.header_read_timeout), if http1 && closing.is_none() => {
                    count_close(self.role, CloseReason::HeaderTimeout);
                    debug!(listener = self.role, "request headers not received within header-read-timeout");
                    return;
                }
                _ = activity.idle_for(idle_timeout), if closing.is_none() => {
                    count_close(self.role, CloseReason::Idle);
                    conn.as_mut().graceful_shutdown();
                    // Nothing is in flight: a short wait lets GOAWAY reach the client.
                    closing = Some(Instant::now() + Duration::from_secs(1));
                }
                _ = sleep_until_some(closing) => {
                    count_close(self.role, CloseReason::GraceExpired);
                    debug!(listener = self.role, "requests still in flight after the grace period; closing");
                    return;
                }
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `age` give or take up to 10%, so a pool's connections do not all reconnect at once.
fn jittered(age: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    let unit = (hasher.finish() % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
    age.mul_f64(1.0 + unit / 10.0)
}

/// Accept failures of one listener, logged at most once per interval with their count.
struct AcceptErrors {
    role: &'static str,
    counter: metrics::Counter,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptErrors {
    const INTERVAL: Duration = Duration::from_secs(5);

    fn new(role: &'static str) -> Self {
        Self {
            role,
            counter: metrics::counter!(telemetry::ACCEPT_ERRORS, "listener" => role),
            unlogged: 0,
            last_log: None,
        }
    }

    fn record(&mut self, error: &std::io::Error) {
        self.counter.increment(1);
        self.unlogged += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= Self::INTERVAL);
        if due {
            warn!(
                listener = self.role,
                %error,
                failures = self.unlogged,
                "accept failed (raise the open-file limit or lower max-connections); next report in {:?} at the earliest",
                Self::INTERVAL
            );
            self.unlogged = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let age = jittered(Duration::from_secs(100));
            assert!(
                age >= Duration::from_secs(90) && age <= Duration::from_secs(110),
                "{age:?}"
            );
        }
    }

    #[test]
    fn admin_limits_are_tighter() {
        let admin = ConnLimits::admin(&ConnLimits::INGEST, 64);
        assert_eq!(admin.max_connections, 64);
        assert!(admin.header_read_timeout <= Duration::from_secs(5));
        assert!(admin.max_connection_age.is_none());
    }
}
