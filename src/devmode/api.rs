//! The developer-mode JSON API under `/api/` on the admin listener: services, operations,
//! trace search, one trace, latency distribution, service dependencies, a live feed of new
//! spans (server-sent events) and the satellite's status.
//!
//! Thin handlers: parse the query (every parameter checked, unknown ones refused), ask the
//! [`Store`] under its read lock, serialise. Bad parameters are `400` with
//! `{"error": "<message naming the parameter>"}`. The contract, with the semantics of every
//! filter, is docs/devmode-api.md.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::DevMode;
use super::store::{SpanQuery, Store, StoredSpan, kind_name, parse_trace_id, value_json};
use crate::forward::UpstreamHealth;
use crate::listen::BoundAddrs;

/// Traces returned when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// Histogram buckets when `buckets` is not given.
pub const DEFAULT_BUCKETS: usize = 20;
/// The most `buckets` accepted.
pub const MAX_BUCKETS: usize = 200;

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
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
    let traces = read(&state.dev).traces(&query, limit);
    Ok(Json(json!({ "traces": traces })).into_response())
}

async fn trace(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    params(raw, &[])?;
    let id = parse_trace_id(&trace_id).ok_or_else(|| {
        bad(format!(
            "invalid `trace_id` {trace_id:?}: expected 32 hex digits (or 16 for a 64-bit id)"
        ))
    })?;
    let store = read(&state.dev);
    let trace = store
        .trace(&id)
        .ok_or_else(|| ApiError::NotFound(format!("trace {trace_id} is not stored")))?;
    let mut spans: Vec<&StoredSpan> = trace.spans.iter().collect();
    spans.sort_by_key(|s| (s.start_us, std::cmp::Reverse(s.duration_us)));
    let body = json!({
        "trace_id": trace.id_hex(),
        "spans": spans.into_iter().map(span_json).collect::<Vec<_>>(),
    });
    Ok(Json(body).into_response())
}

fn span_json(span: &StoredSpan) -> Value {
    let mut tags = Map::new();
    for kv in &span.span.attributes {
        tags.insert(
            kv.key.clone(),
            kv.value.as_ref().map_or(Value::Null, value_json),
        );
    }
    let logs: Vec<Value> = span
        .span
        .events
        .iter()
        .map(|event| {
            let mut fields = Map::new();
            fields.insert("event".to_owned(), Value::from(event.name.as_str()));
            for kv in &event.attributes {
                fields.insert(
                    kv.key.clone(),
                    kv.value.as_ref().map_or(Value::Null, value_json),
                );
            }
            json!({ "time_us": event.time_unix_nano / 1000, "fields": fields })
        })
        .collect();
    json!({
        "span_id": span.span_id_hex(),
        "parent_span_id": span.parent_hex(),
        "service": &*span.service,
        "operation": &*span.operation,
        "start_us": span.start_us,
        "duration_us": span.duration_us,
        "kind": kind_name(span.span.kind),
        "error": span.error,
        "status_message": span.span.status.as_ref().map_or("", |s| s.message.as_str()),
        "tags": tags,
        "logs": logs,
    })
}

async fn latency(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut allowed = QUERY_PARAMS.to_vec();
    allowed.push("buckets");
    let pairs = params(raw, &allowed)?;
    let query = span_query(&pairs)?;
    let buckets = match pairs.iter().find(|(n, _)| n == "buckets") {
        Some((name, value)) => number(name, value, 1..=MAX_BUCKETS as u64)? as usize,
        None => DEFAULT_BUCKETS,
    };
    let latency = read(&state.dev).latency(&query, buckets);
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

async fn live(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    params(raw, &[])?;
    let rx = state.dev.live.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(span) => Event::default().data(serde_json::to_string(&*span).unwrap_or_default()),
            Err(RecvError::Lagged(skipped)) => Event::default()
                .event("lagged")
                .data(json!({ "skipped": skipped }).to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    })
    .take_until(state.shutdown.cancelled_owned());
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
        },
        "traces": { "stored": stats.traces, "evicted": stats.evicted_traces },
        "store": { "used_bytes": stats.used_bytes, "limit_bytes": stats.limit_bytes },
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
