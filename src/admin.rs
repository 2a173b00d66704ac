//! The admin listener: `/_live`, `/_ready`, Prometheus `/metrics` and `/diagnostics` (the page
//! itself is [`crate::diagnostics`]).
//!
//! Readiness is a start-up latch (each start-up step holds a [`StartupHold`]; ready once all
//! are dropped) AND the buffer below its high-water mark AND not draining AND, when
//! forwarding, the upstream reachable; with a spool (`--spool-dir`) the last is replaced by
//! the spool not nearly full ([`crate::pipeline::spool::READY_HIGH_WATER`]): during an
//! upstream outage reports wait on disk, so the load balancer should keep sending until the
//! spool cannot take them. Sits beside the pipeline: it only reads shared state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Mode;
use crate::forward::UpstreamHealth;
use crate::listen::BoundAddrs;
use crate::pipeline::Ring;

/// Held by a start-up step; readiness waits until every hold is dropped.
#[derive(Debug)]
pub struct StartupHold(#[allow(dead_code)] Arc<()>);

/// Everything `/_ready` and `/diagnostics` look at.
#[derive(Debug)]
pub struct Readiness {
    startup: Weak<()>,
    ring: Ring,
    upstream: Option<Arc<UpstreamHealth>>,
    draining: AtomicBool,
}

impl Readiness {
    /// Readiness over `ring` and `upstream`, not ready until the returned hold is dropped.
    pub fn new(ring: Ring, upstream: Option<Arc<UpstreamHealth>>) -> (Arc<Readiness>, StartupHold) {
        let hold = Arc::new(());
        let readiness = Readiness {
            startup: Arc::downgrade(&hold),
            ring,
            upstream,
            draining: AtomicBool::new(false),
        };
        (Arc::new(readiness), StartupHold(hold))
    }

    /// Marks the process as draining: not ready from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// The buffer readiness watches.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The upstream's health, when forwarding.
    pub fn upstream(&self) -> Option<&Arc<UpstreamHealth>> {
        self.upstream.as_ref()
    }

    /// Logs the readiness `/_ready` reports, at start and on every change, until `stop`. The
    /// first line waits up to `settle` for the start-up checks (the first upstream connect),
    /// so a satellite that becomes ready at once logs one line, not two.
    pub async fn log_changes(self: Arc<Self>, settle: Duration, stop: CancellationToken) {
        const EVERY: Duration = Duration::from_millis(250);
        let deadline = tokio::time::Instant::now() + settle;
        while self.not_ready_reason().is_some() && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
        let mut last = None;
        loop {
            let now = self.not_ready_reason();
            if last != Some(now) {
                match now {
                    None => info!("cubesat ready to accept spans (/_ready answers 200)"),
                    Some(reason) => warn!(reason, "cubesat not ready: /_ready answers 503"),
                }
                last = Some(now);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.startup.strong_count() > 0 {
            Some("starting")
        } else if self.draining.load(Ordering::Acquire) {
            Some("draining for shutdown")
        } else if !self.ring.has_headroom() {
            Some("buffer above high-water mark")
        } else if let Some(spool) = self.ring.spool() {
            // Reports wait on disk while the upstream is away: unready only once they cannot.
            spool.is_nearly_full().then_some("spool nearly full")
        } else if self.upstream.as_ref().is_some_and(|u| !u.is_up()) {
            Some("upstream unreachable")
        } else {
            None
        }
    }
}

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Bound addresses, for diagnostics.
    pub addrs: BoundAddrs,
    /// The mode.
    pub mode: Mode,
    /// The upstream URL, for diagnostics (userinfo masked; it never holds the token).
    pub upstream: Option<String>,
    /// The configuration as diagnostics shows it, secrets masked
    /// ([`crate::diagnostics::config_summary`]).
    pub config: Arc<serde_json::Value>,
    /// When the process started.
    pub started: SystemTime,
}

/// The admin routes.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/_live", get(|| async { "live\n" }))
        .route("/_ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/diagnostics", get(crate::diagnostics::handler))
        .with_state(state)
}

async fn ready(State(state): State<AdminState>) -> impl IntoResponse {
    match state.readiness.not_ready_reason() {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
