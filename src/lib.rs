//! cubesat: a Lightstep Satellite-compatible trace ingest proxy.
//!
//! Data moves one way:
//!
//! ```text
//!  tracers ──► ingest/ ──► wire/ ──► pipeline/ring ──► pipeline/batcher ──► forward/ ──► upstream
//!             (gRPC,      (zero-copy  (byte budget,     (one open batch      (retry,
//!              HTTP)       scan)       high/low water)   per token+reporter)  backoff)
//! ```
//!
//! Spans travel as `Bytes` slices of the request that brought them: nothing on that path
//! decodes or re-encodes a span. The one exception is opt-in: when `--upstream-protocol` forces
//! one protocol, the intake translates reports of the other one ([`translate`]) before they
//! join the same path. Beside the pipeline, not inside it: [`config`], [`tls`],
//! [`telemetry`], [`admin`] (readiness, metrics), [`listen`] and [`shutdown`].
//!
//! Which folder owns what, and the checklist for adding a protocol, are in
//! `ARCHITECTURE.md` at the repository root.

pub mod admin;
pub mod codec;
pub mod config;
pub mod devmode;
pub mod diagnostics;
pub mod forward;
pub mod hexid;
pub mod ingest;
pub mod listen;
pub mod pipeline;
pub mod proto;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod translate;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, Mode};
use crate::forward::{Exporter, Upstream, UpstreamSettings};
use crate::ingest::Intake;
use crate::ingest::conn::{self, ConnLimits};
use crate::listen::Listeners;
use crate::pipeline::{Batcher, Ring, RingConfig};
use crate::shutdown::{Drain, DrainReport};
use crate::telemetry::DropReason;

/// Why the satellite could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The upstream client could not be built.
    #[error(transparent)]
    Upstream(#[from] forward::client::UpstreamError),
    /// The ingest routes could not be built.
    #[error(transparent)]
    Routes(#[from] ingest::RouterError),
    /// The spool directory could not be opened.
    #[error(transparent)]
    Spool(#[from] pipeline::spool::SpoolError),
    /// Reading the spool back failed (its task panicked).
    #[error("reading the spool back failed: {0}")]
    SpoolRead(tokio::task::JoinError),
    /// The ring's region (`--buffer-bytes`) could not be reserved.
    #[error(transparent)]
    Region(#[from] pipeline::arena::RegionError),
    /// The developer-mode store thread could not be started.
    #[error("cannot start the developer-mode store thread: {0}")]
    Store(#[from] std::io::Error),
}

/// How often an idle ring region is checked for; pages are given back after one to two of
/// these periods without a report.
const REGION_IDLE_CHECK: Duration = Duration::from_secs(15);

/// Runs the satellite on already-bound `listeners` until `shutdown` resolves, then drains and
/// reports what the drain delivered and dropped.
pub async fn run(
    config: Config,
    listeners: Listeners,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<DrainReport, RunError> {
    let addrs = listeners.addrs();
    let started = std::time::SystemTime::now();
    let drain = Drain::default();
    if config.mode == Mode::Serve && config.tokens.configured.get().is_empty() {
        warn!(
            "no access token configured (--access-token or LIGHTSTEP_ACCESS_TOKEN): only reports that carry their own token will be accepted upstream"
        );
    }
    let upstream_url = config
        .upstream
        .as_ref()
        .map(|u| diagnostics::redact_url(&u.url));
    let upstream_tasks = TaskTracker::new();

    // The ring's preallocated region: gRPC messages are read straight into it, other reports'
    // span runs are copied into it once, so buffered spans live in `--buffer-bytes` of memory
    // allocated once (BENCHMARKS.md, "Peak RSS against `--buffer-bytes`").
    let (ring, shards) = Ring::new(RingConfig {
        capacity_bytes: config.buffer_bytes,
        high_water: 0.8,
        low_water: 0.6,
        shards: config.batch_workers,
    })?;
    // With --spool-dir every admitted report is written to disk before the client hears OK;
    // what the last run left there is replayed first.
    // Reading back a large spool is disk I/O: off the async workers.
    let spool = match config.spool.clone() {
        Some(spool) => Some(
            tokio::task::spawn_blocking(move || pipeline::Spool::open(&spool))
                .await
                .map_err(RunError::SpoolRead)??
                .0,
        ),
        None => None,
    };
    let ring = match &spool {
        Some(spool) => ring.with_spool(spool.clone()),
        None => ring,
    };
    let exporter = match &config.upstream {
        Some(up) => Exporter::Upstream(Upstream::new(
            UpstreamSettings {
                url: up.url.clone(),
                ca_pem: up.ca_pem.clone(),
                request_timeout: up.request_timeout,
                connect_timeout: Duration::from_secs(5),
                concurrency: up.concurrency,
                retry_max_elapsed: up.retry_max_elapsed,
            },
            upstream_tasks.clone(),
            drain.abort.clone(),
            ring.arena().cloned(),
        )?),
        None => {
            info!(
                "forwarding is off (no --upstream): spans are kept in the developer-mode store only"
            );
            Exporter::Off
        }
    };
    let upstream_health = match &exporter {
        Exporter::Upstream(up) => Some(up.health()),
        Exporter::Off => None,
    };
    let (readiness, startup) = admin::Readiness::new(ring.clone(), upstream_health.clone());

    // Sides of the pipeline, upstream end first.
    if let Exporter::Upstream(up) = &exporter {
        tokio::spawn(
            up.clone()
                .watch_health(Duration::from_secs(1), drain.abort.clone()),
        );
    }
    if let Some(region) = ring.arena().cloned() {
        // After a burst, an idle satellite gives the region's pages back (RSS falls again).
        tokio::spawn(region.give_back_when_idle(REGION_IDLE_CHECK, drain.abort.clone()));
    }
    let mut batchers = JoinSet::new();
    for shard in shards {
        let batcher = Batcher::new(config.batch, exporter.clone())
            .flush_at_once_on(drain.stop_accepting.clone())
            .with_budget(ring.budget().clone());
        batchers.spawn(batcher.run(shard, drain.flush.clone()));
    }
    if let Some(spool) = &spool {
        tokio::spawn(
            spool
                .clone()
                .replay(ring.clone(), drain.stop_accepting.clone()),
        );
    }
    let mut intake = Intake::new(ring.clone(), config.tokens.clone(), config.batch.max_bytes)
        .with_upstream_protocol(config.upstream.as_ref().and_then(|u| u.protocol.forced()))
        .with_max_message_bytes(config.max_message_bytes);
    // Developer mode keeps a copy of every accepted span; forwarding is unchanged.
    let devmode = match config.mode {
        Mode::Dev => Some(devmode::DevMode::start(config.store_bytes)?),
        Mode::Serve => None,
    };
    if let Some((tee, _)) = &devmode {
        intake = intake.with_tee(tee.clone());
    }
    let intake = Arc::new(intake);
    let routes = ingest::router(intake, config.max_message_bytes, &config.cors).await?;

    // HTTP/2 flow-control windows are sized from the memory budget.
    let conn_limits = ConnLimits {
        budget_bytes: config.buffer_bytes,
        ..config.conn
    };
    let mut servers = JoinSet::new();
    servers.spawn(conn::serve(
        "ingest",
        listeners.ingest,
        None,
        routes.router.clone(),
        conn_limits,
        drain.stop_accepting.clone(),
    ));
    if let (Some(listener), Some(tls)) = (listeners.tls, &config.tls) {
        servers.spawn(conn::serve(
            "tls",
            listener,
            Some(TlsAcceptor::from(tls.server.clone())),
            routes.router.clone(),
            conn_limits,
            drain.stop_accepting.clone(),
        ));
    }
    tokio::spawn(
        reload::Reloadable {
            tokens: config.tokens.clone(),
            certs: config.tls.as_ref().map(|tls| tls.certs.clone()),
        }
        .on_hangup(drain.abort.clone()),
    );
    let mut admin_router = admin::router(admin::AdminState {
        readiness: readiness.clone(),
        metrics,
        addrs,
        mode: config.mode,
        upstream: upstream_url.clone(),
        config: Arc::new(diagnostics::config_summary(&config)),
        started,
    });
    if let Some((_, dev)) = devmode {
        admin_router = admin_router.merge(devmode::router(devmode::api::ApiState {
            dev,
            addrs,
            upstream: upstream_url,
            upstream_health: upstream_health.clone(),
            shutdown: drain.stop_accepting.clone(),
        }));
    }
    // The admin port has its own small connection limit, so flooding it cannot take the file
    // descriptors ingest needs; it answers (/_ready: draining, /metrics) until the very end.
    let admin = tokio::spawn(conn::serve(
        "admin",
        listeners.admin,
        None,
        admin_router,
        config.admin_conn,
        drain.abort.clone(),
    ));
    drop(startup);
    tokio::spawn(
        readiness
            .clone()
            .log_changes(Duration::from_secs(3), drain.abort.clone()),
    );
    if config.mode == Mode::Dev {
        println!("cubesat dev UI: {}", devmode::api::ui_url(addrs.admin));
    }

    shutdown.await;
    let deadline = tokio::time::Instant::now() + config.drain_timeout;
    let upstream = match &exporter {
        Exporter::Upstream(up) => Some(up.clone()),
        Exporter::Off => None,
    };
    let tally = |up: &forward::Upstream| (up.delivered_spans(), up.aborted_spans());
    let before = upstream.as_ref().map(tally).unwrap_or_default();
    let buffered = ring.held_spans();
    info!(
        buffered_spans = buffered,
        drain_timeout = ?config.drain_timeout,
        "shutdown: no new connections; flushing every open batch"
    );
    readiness.set_draining();
    ingest::stop_serving(&routes.health).await;
    // Listeners close, idle connections close, requests in flight get the shutdown grace;
    // the batchers flush every open batch now and each report that still arrives at once.
    drain.stop_accepting.cancel();
    let _ = tokio::time::timeout_at(deadline, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    drain.flush.cancel();
    let flushed = tokio::time::timeout_at(deadline, async {
        while batchers.join_next().await.is_some() {}
        upstream_tasks.close();
        upstream_tasks.wait().await;
    })
    .await;
    if flushed.is_err() {
        warn!(
            held_spans = ring.held_spans(),
            "drain timeout reached with spans still buffered"
        );
    }
    if let Some(spool) = &spool {
        // Nothing is acknowledged from here on: what is not delivered yet stays on disk.
        spool.freeze();
    }
    drain.abort.cancel();
    // Aborted sends count their own spans; whatever is still held never left the batchers.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while batchers.join_next().await.is_some() {}
        upstream_tasks.wait().await;
    })
    .await;
    // With a spool, what is still held here is on disk already (every admitted report was
    // written before its client heard OK) and is replayed at the next start: not dropped.
    let left = ring.held_spans();
    batchers.abort_all();
    let (left, spooled) = match &spool {
        Some(_) => (0, left),
        None => (left, 0),
    };
    telemetry::count_dropped(DropReason::Shutdown, left);
    let after = upstream.as_ref().map(tally).unwrap_or_default();
    let report = DrainReport {
        buffered,
        delivered: after.0.saturating_sub(before.0),
        dropped: after.1.saturating_sub(before.1) + left,
        spooled,
    };
    if let Some(spool) = &spool {
        info!(
            spooled_spans = spooled,
            spooled_records = spool.status().records,
            dir = %spool.dir().display(),
            "shutdown: undelivered reports stay in the spool for the next start"
        );
    }
    if report.dropped > 0 {
        warn!(
            delivered_spans = report.delivered,
            dropped_spans = report.dropped,
            exit_status = report.exit_code(),
            "shutdown: {} spans delivered, {} spans dropped while draining",
            report.delivered,
            report.dropped
        );
    } else {
        info!(
            delivered_spans = report.delivered,
            dropped_spans = 0,
            "shutdown: {} spans delivered, none dropped",
            report.delivered
        );
    }
    let _ = admin.await;
    info!("cubesat stopped");
    Ok(report)
}

/// Installs the Prometheus recorder and describes every metric.
pub fn install_metrics() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(telemetry::UPSTREAM_REQUEST_SECONDS.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .install_recorder()?;
    telemetry::describe();
    Ok(handle)
}

/// What a parsed command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run cubesat in this mode with these flags.
    Run(Mode, Box<config::Flags>),
    /// Write development certificates and exit (`cubesat certs`).
    Certs(config::CertsArgs),
}

/// What a parsed command line asks for: a mode to run (developer mode when no subcommand is
/// given), or `certs`.
pub fn invocation(command: Option<config::Command>, flags: config::Flags) -> Invocation {
    match command {
        None => Invocation::Run(Mode::Dev, Box::new(flags)),
        Some(config::Command::Dev(flags)) => Invocation::Run(Mode::Dev, Box::new(flags)),
        Some(config::Command::Serve(flags)) => Invocation::Run(Mode::Serve, Box::new(flags)),
        Some(config::Command::Certs(args)) => Invocation::Certs(args),
    }
}
