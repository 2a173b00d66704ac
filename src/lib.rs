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
pub mod ingest;
pub mod listen;
pub mod pipeline;
pub mod proto;
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
use crate::shutdown::Drain;
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
    /// The developer-mode store thread could not be started.
    #[error("cannot start the developer-mode store thread: {0}")]
    Store(#[from] std::io::Error),
}

/// Runs the satellite on already-bound `listeners` until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    listeners: Listeners,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let addrs = listeners.addrs();
    let started = std::time::SystemTime::now();
    let drain = Drain::default();
    if config.mode == Mode::Serve && config.tokens.configured.expose().is_empty() {
        warn!(
            "no access token configured (--access-token or LIGHTSTEP_ACCESS_TOKEN): only reports that carry their own token will be accepted upstream"
        );
    }
    let upstream_url = config
        .upstream
        .as_ref()
        .map(|u| diagnostics::redact_url(&u.url));
    let upstream_tasks = TaskTracker::new();

    let (ring, shards) = Ring::new(RingConfig {
        capacity_bytes: config.buffer_bytes,
        high_water: 0.8,
        low_water: 0.6,
        shards: config.batch_workers,
    });
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
    let mut batchers = JoinSet::new();
    for shard in shards {
        let batcher =
            Batcher::new(config.batch, exporter.clone()).with_budget(ring.budget().clone());
        batchers.spawn(batcher.run(shard, drain.flush.clone()));
    }
    let mut intake = Intake::new(ring.clone(), config.tokens.clone(), config.batch.max_bytes)
        .with_upstream_protocol(config.upstream.as_ref().and_then(|u| u.protocol.forced()));
    // Developer mode keeps a copy of every accepted span; forwarding is unchanged.
    let devmode = match config.mode {
        Mode::Dev => Some(devmode::DevMode::start(config.store_bytes)?),
        Mode::Serve => None,
    };
    if let Some((tee, _)) = &devmode {
        intake = intake.with_tee(tee.clone());
    }
    let intake = Arc::new(intake);
    let routes = ingest::router(intake, config.max_message_bytes).await?;

    let limits = ConnLimits {
        max_connections: config.max_connections,
        tls_handshake_timeout: Duration::from_secs(10),
        drain_timeout: config.drain_timeout,
    };
    let mut servers = JoinSet::new();
    servers.spawn(conn::serve(
        listeners.ingest,
        None,
        routes.router.clone(),
        limits,
        drain.stop_accepting.clone(),
    ));
    if let (Some(listener), Some(tls)) = (listeners.tls, &config.tls) {
        servers.spawn(conn::serve(
            listener,
            Some(TlsAcceptor::from(tls.server.clone())),
            routes.router.clone(),
            limits,
            drain.stop_accepting.clone(),
        ));
    }
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
    let admin_stop = drain.abort.clone();
    let admin = tokio::spawn(async move {
        let serve = axum::serve(listeners.admin, admin_router)
            .with_graceful_shutdown(async move { admin_stop.cancelled().await });
        if let Err(error) = serve.await {
            warn!(%error, "admin server failed");
        }
    });
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
    readiness.set_draining();
    ingest::stop_serving(&routes.health).await;
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
        warn!("drain timeout reached with spans still buffered");
    }
    drain.abort.cancel();
    // Aborted sends count their own spans; whatever is still held never left the batchers.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while batchers.join_next().await.is_some() {}
        upstream_tasks.wait().await;
    })
    .await;
    batchers.abort_all();
    let left = ring.held_spans();
    if left > 0 {
        telemetry::count_dropped(DropReason::Shutdown, left);
        warn!(spans = left, "spans dropped at shutdown");
    }
    let _ = admin.await;
    info!("cubesat stopped");
    Ok(())
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
