//! The admin listener: `/_live`, `/_ready`, Prometheus `/metrics` and `/diagnostics`.
//!
//! Readiness is a start-up latch (each start-up step holds a [`StartupHold`]; ready once all
//! are dropped) AND the buffer below its high-water mark AND, when forwarding, the upstream
//! reachable AND not draining. Sits beside the pipeline: it only reads shared state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;

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

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<&'static str> {
        if self.startup.strong_count() > 0 {
            Some("starting")
        } else if self.draining.load(Ordering::Acquire) {
            Some("draining for shutdown")
        } else if !self.ring.has_headroom() {
            Some("buffer above high-water mark")
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
    /// The upstream URL, for diagnostics (it never holds the token).
    pub upstream: Option<String>,
}

/// The admin routes.
pub fn router(state: AdminState) -> axum::Router {
    axum::Router::new()
        .route("/_live", get(|| async { "live\n" }))
        .route("/_ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/diagnostics", get(diagnostics))
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

async fn diagnostics(State(state): State<AdminState>) -> impl IntoResponse {
    let r = &state.readiness;
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "mode": match state.mode { Mode::Dev => "dev", Mode::Serve => "serve" },
        "ready": r.not_ready_reason().is_none(),
        "not_ready_reason": r.not_ready_reason(),
        "listeners": state.addrs,
        "buffer": {
            "used_bytes": r.ring.used_bytes(),
            "capacity_bytes": r.ring.capacity_bytes(),
            "held_spans": r.ring.held_spans(),
            "below_high_water": r.ring.has_headroom(),
        },
        "upstream": state.upstream.as_ref().map(|url| serde_json::json!({
            "url": url,
            "reachable": r.upstream.as_ref().is_some_and(|u| u.is_up()),
        })),
    }))
}
