//! The developer-mode JSON API under `/api/` on the admin listener: services, operations,
//! trace search, one trace (and pinning it), latency distribution, service dependencies, a
//! live feed of new spans (server-sent events) and the satellite's status.
//!
//! The live feed is bounded: at most [`MAX_LIVE_SUBSCRIBERS`] at once (more are refused with
//! `503`), and a subscriber that does not read falls behind by at most [`LIVE_BUFFER`] events
//! before it is dropped (counted in `cubesat_live_subscribers_dropped_total`): the store
//! thread only ever publishes into a broadcast ring, so no reader can slow ingest.
//!
//! Thin handlers: parse the query (every parameter checked, unknown ones refused), ask the
//! [`Store`] under its read lock, serialise. Bad parameters are `400` with
//! `{"error": "<message naming the parameter>"}`. The contract, with the semantics of every
//! filter, is docs/devmode-api.md.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DevMode;
use super::store::{PinError, Scale, SpanQuery, Store, TraceId, parse_trace_id};
use crate::forward::UpstreamHealth;
use crate::listen::BoundAddrs;
use crate::telemetry;

/// Traces returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// Histogram buckets when `buckets` is not given.
pub const DEFAULT_BUCKETS: usize = 20;
/// The most `buckets` accepted.
pub const MAX_BUCKETS: usize = 200;
/// Live-tail subscribers served at once; more are refused with `503`.
pub const MAX_LIVE_SUBSCRIBERS: usize = 64;
/// Events a live-tail subscriber may fall behind by before it is dropped.
pub const LIVE_BUFFER: usize = 1024;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store and live feed.
    pub dev: Arc<DevMode>,
    /// Bound listener addresses.
    pub addrs: BoundAddrs,
    /// The upstream URL when forwarding (it never holds the token).
    pub upstream: Option<String>,
    /// The upstream's reachability when forwarding.
    pub upstream_health: Option<Arc<UpstreamHealth>>,
    /// Cancelled when the process shuts down: ends live streams so the listener can close.
    pub shutdown: CancellationToken,
}

/// Why an API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query or path parameter is missing, unknown or malformed.
    #[error("{0}")]
    BadParameter(String),
    /// The thing asked for is not stored (any more).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the store's limits (e.g. too many pinned traces).
    #[error("{0}")]
    Conflict(String),
    /// The server is at a limit for now (live-tail subscribers).
    #[error("{0}")]
    Busy(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadParameter(message.into())
}

/// The `/api/` routes.
pub fn router(state: ApiState) -> axum::Router {
    axum::Router::new()
        .route("/api/services", get(services))
        .route("/api/services/{service}/operations", get(operations))
        .route("/api/traces", get(traces))
        .route("/api/traces/{trace_id}", get(trace))
        .route("/api/traces/{trace_id}/pin", put(pin).delete(unpin))
        .route("/api/latency", get(latency))
        .route("/api/dependencies", get(dependencies))
        .route("/api/live", get(live))
        .route("/api/status", get(status))
        .route("/api/{*rest}", get(unknown))
        .with_state(state)
}

/// The UI's address as a browser can open it (an unspecified bind address becomes loopback).
pub fn ui_url(admin: SocketAddr) -> String {
    let mut addr = admin;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!("http://{addr}/")
}

fn read(dev: &DevMode) -> RwLockReadGuard<'_, Store> {
    match dev.store.read() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn write(dev: &DevMode) -> RwLockWriteGuard<'_, Store> {
    match dev.store.write() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Query parameters, in order, after checking every name against `allowed`.
fn params(raw: Option<String>, allowed: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let raw = raw.unwrap_or_default();
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (i, (name, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&name.as_str()) {
            return Err(bad(format!(
                "unknown parameter `{name}`; this endpoint takes {}",
                if allowed.is_empty() {
                    "no parameters".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if name != "tag" && pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(bad(format!("parameter `{name}` is given more than once")));
        }
    }
    Ok(pairs)
}

fn number(name: &str, value: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64, ApiError> {
    match value.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(bad(format!(
            "invalid `{name}` {value:?}: expected a whole number from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

const QUERY_PARAMS: [&str; 8] = [
    "service",
    "operation",
    "tag",
    "min_duration_us",
    "max_duration_us",
    "errors",
    "start_us",
    "end_us",
];

/// Builds a span query from the filter parameters; other parameters are left to the caller.
pub fn span_query(pairs: &[(String, String)]) -> Result<SpanQuery, ApiError> {
    let mut query = SpanQuery::default();
    for (name, value) in pairs {
        let micros = || number(name, value, 0..=u64::MAX);
        match name.as_str() {
            "service" | "operation" if value.is_empty() => {
                return Err(bad(format!(
                    "`{name}` is empty: give a name or leave it out"
                )));
            }
            "service" => query.service = Some(value.clone()),
            "operation" => query.operation = Some(value.clone()),
            "tag" => match value.split_once('=') {
                Some((key, v)) if !key.is_empty() => {
                    query.tags.push((key.to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(bad(format!(
                        "invalid `tag` {value:?}: expected key=value, e.g. tag=http.status_code=500"
                    )));
                }
            },
            "min_duration_us" => query.min_duration_us = Some(micros()?),
            "max_duration_us" => query.max_duration_us = Some(micros()?),
            "start_us" => query.start_us = Some(micros()?),
            "end_us" => query.end_us = Some(micros()?),
            "errors" => {
                query.errors_only = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(bad(format!(
                            "invalid `errors` {value:?}: expected true or false"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    if let (Some(lo), Some(hi)) = (query.min_duration_us, query.max_duration_us)
        && lo > hi
    {
        return Err(bad(format!(
            "`min_duration_us` ({lo}) is larger than `max_duration_us` ({hi})"
        )));
    }
    if let (Some(start), Some(end)) = (query.start_us, query.end_us)
        && start > end
    {
        return Err(bad(format!(
            "`start_us` ({start}) is later than `end_us` ({end})"
        )));
    }
    Ok(query)
}

async fn services(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let services = read(&state.dev).services();
    Ok(Json(json!({ "services": services })).into_response())
}

async fn operations(
    State(state): State<ApiState>,
    Path(service): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let operations = read(&state.dev)
        .operations(&service)
        .ok_or_else(|| ApiError::NotFound(format!("no spans of service {service:?} are stored")))?;
    Ok(Json(json!({ "operations": operations })).into_response())
}

async fn traces(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = QUERY_PARAMS.to_vec();
    allowed.push("limit");
    let pairs = params(raw, &allowed)?;
    let query = span_query(&pairs)?;
    let limit = match pairs.iter().find(|(n, _)| n == "limit") {
        Some((name, value)) => number(name, value, 1..=MAX_LIMIT as u64)? as usize,
        None => DEFAULT_LIMIT,
    };
    let store = read(&state.dev);
    let traces = store.traces(&query, limit);
    let stats = store.stats();
    drop(store);
    Ok(Json(json!({
        "traces": traces,
        "store": {
            "oldest_start_us": stats.oldest_start_us,
            "evicted_traces": stats.evicted_traces,
            "evicted_spans": stats.evicted_spans,
            "pinned_traces": stats.pinned_traces,
        },
    }))
    .into_response())
}

fn trace_id(trace_id: &str) -> Result<TraceId, ApiError> {
    parse_trace_id(trace_id).ok_or_else(|| {
        bad(format!(
            "invalid `trace_id` {trace_id:?}: expected 32 hex digits (or 16 for a 64-bit id)"
        ))
    })
}

fn not_stored(trace_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "trace {trace_id} is not stored: it may have been evicted, or not arrived yet"
    ))
}

async fn trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = params(raw, &["fields"])?;
    let timeline = match pairs.first().map(|(_, v)| v.as_str()) {
        None | Some("all") => false,
        Some("timeline") => true,
        Some(other) => {
            return Err(bad(format!(
                "invalid `fields` {other:?}: expected all or timeline"
            )));
        }
    };
    let id = self::trace_id(&trace_id)?;
    let store = read(&state.dev);
    let trace = store.trace(&id).ok_or_else(|| not_stored(&trace_id))?;
    let response = if timeline {
        Json(super::view::timeline(trace)).into_response()
    } else {
        Json(super::view::trace_json(&store, trace)).into_response()
    };
    drop(store);
    Ok(response)
}

async fn pin(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let id = self::trace_id(&trace_id)?;
    match write(&state.dev).pin(&id) {
        Ok(()) => Ok(Json(json!({ "trace_id": trace_id, "pinned": true })).into_response()),
        Err(PinError::NotFound) => Err(not_stored(&trace_id)),
        Err(e) => Err(ApiError::Conflict(e.to_string())),
    }
}

async fn unpin(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let id = self::trace_id(&trace_id)?;
    if !write(&state.dev).unpin(&id) {
        return Err(not_stored(&trace_id));
    }
    Ok(Json(json!({ "trace_id": trace_id, "pinned": false })).into_response())
}

async fn latency(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = QUERY_PARAMS.to_vec();
    allowed.extend(["buckets", "scale"]);
    let pairs = params(raw, &allowed)?;
    let query = span_query(&pairs)?;
    let buckets = match pairs.iter().find(|(n, _)| n == "buckets") {
        Some((name, value)) => number(name, value, 1..=MAX_BUCKETS as u64)? as usize,
        None => DEFAULT_BUCKETS,
    };
    let scale = match pairs
        .iter()
        .find(|(n, _)| n == "scale")
        .map(|(_, v)| v.as_str())
    {
        None | Some("log") => Scale::Log,
        Some("linear") => Scale::Linear,
        Some(other) => {
            return Err(bad(format!(
                "invalid `scale` {other:?}: expected log or linear"
            )));
        }
    };
    let latency = read(&state.dev).latency(&query, buckets, scale);
    Ok(Json(latency).into_response())
}

async fn dependencies(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let edges = read(&state.dev).dependencies();
    Ok(Json(json!({ "edges": edges })).into_response())
}

/// Holds one live-tail slot; gives it back when the subscriber goes.
struct LiveSlot(Arc<DevMode>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        self.0.live_subscribers.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn live(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    params(raw, &[])?;
    if state.dev.live_subscribers.fetch_add(1, Ordering::AcqRel) >= MAX_LIVE_SUBSCRIBERS {
        state.dev.live_subscribers.fetch_sub(1, Ordering::AcqRel);
        metrics::counter!(telemetry::LIVE_SUBSCRIBERS_REFUSED).increment(1);
        return Err(ApiError::Busy(format!(
            "{MAX_LIVE_SUBSCRIBERS} live-tail subscribers are connected already; close one and retry"
        )));
    }
    let slot = LiveSlot(state.dev.clone());
    let mut rx = state.dev.live.subscribe();
    let (tx, body) = mpsc::channel::<Result<Event, Infallible>>(LIVE_BUFFER);
    let shutdown = state.shutdown.clone();
    // One small task per subscriber moves events from the broadcast ring into the body: when the
    // reader stops reading, its buffer fills and it is dropped, never waited for.
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                received = rx.recv() => match received {
                    Ok(span) => Event::default().data(&*span),
                    Err(RecvError::Lagged(skipped)) => Event::default()
                        .event("lagged")
                        .data(json!({ "skipped": skipped }).to_string()),
                    Err(RecvError::Closed) => break,
                },
            };
            if tx.try_send(Ok(event)).is_err() {
                if !tx.is_closed() {
                    metrics::counter!(telemetry::LIVE_SUBSCRIBERS_DROPPED).increment(1);
                }
                break;
            }
        }
    });
    let stream = futures_util::stream::unfold(body, |mut body| async move {
        body.recv().await.map(|event| (event, body))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn status(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let stats = read(&state.dev).stats();
    let dev = &state.dev;
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "mode": "dev",
        "listeners": state.addrs,
        "ui_url": ui_url(state.addrs.admin),
        "spans": {
            "received": dev.received(),
            "stored": stats.spans,
            "dropped": dev.dropped(),
            "evicted": stats.evicted_spans,
            "errors": stats.error_spans,
        },
        "services": stats.services,
        "traces": {
            "stored": stats.traces,
            "evicted": stats.evicted_traces,
            "pinned": stats.pinned_traces,
        },
        "store": {
            "used_bytes": stats.used_bytes,
            "limit_bytes": stats.limit_bytes,
            "oldest_start_us": stats.oldest_start_us,
        },
        "live_subscribers": state.dev.live_subscribers.load(Ordering::Relaxed),
        "upstream": state.upstream.as_ref().map(|url| json!({
            "url": url,
            "reachable": state.upstream_health.as_ref().is_some_and(|u| u.is_up()),
        })),
    });
    Ok(Json(body).into_response())
}

async fn unknown(Path(rest): Path<String>) -> ApiError {
    ApiError::NotFound(format!(
        "no API endpoint /api/{rest}; see /api/services, /api/traces, /api/latency, \
         /api/dependencies, /api/live, /api/status"
    ))
}
