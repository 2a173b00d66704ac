//! The legacy Thrift transports of Lightstep tracers: Thrift-shaped JSON on `POST
//! /api/v0/reports` (Ruby, Objective-C, PHP, JS `transport: 'thrift'`) and a TBinaryProtocol
//! `Report(auth, request)` call on `POST /_rpc/v1/reports/binary` (Python `use_thrift=True`).
//!
//! Both bodies are read into one owned model ([`ThriftReport`]), converted into a Lightstep
//! protobuf `ReportRequest` ([`to_report_request`]) and handed to [`Intake::lightstep_report`],
//! so their spans join the same zero-copy pipeline as every other Lightstep report. These old
//! transports are rare and small, so the decode and re-encode here are no hot-path concern;
//! this module must never reach past the intake (no batching, no forwarding).

pub mod binary;
mod convert;
mod model;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;

use crate::ingest::auth;
use crate::ingest::http::{Route, collect_limited, decoded_body};
use crate::ingest::intake::Intake;
use crate::ingest::refused::Refused;
use crate::proto::collector as pb;

use convert::micros;
pub use convert::to_report_request;
pub use model::{
    KeyValue, LogRecord, Metrics, MetricsSample, NamedCounter, Runtime, SpanRecord, TagValue,
    ThriftReport, TraceJoinId, parse_json,
};

/// Why a Thrift report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ThriftError {
    /// The body is not Thrift-shaped `ReportRequest` JSON.
    #[error("invalid Thrift ReportRequest JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not a well-formed TBinaryProtocol `Report` call.
    #[error("invalid Thrift binary Report call: {0}")]
    Binary(String),
    /// A required guid is absent or empty.
    #[error("{field} is missing")]
    MissingGuid {
        /// Where, e.g. `span_records[2].span_guid`.
        field: String,
    },
    /// A guid is not hexadecimal.
    #[error("{field} is not a hex guid: {value:?}")]
    BadGuid {
        /// Where.
        field: String,
        /// What came.
        value: String,
    },
}

/// The Thrift routes: `POST /api/v0/reports` and `POST /_rpc/v1/reports/binary`.
pub fn routes(intake: Arc<Intake>, max_message_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/api/v0/reports", post(json_report))
        .route("/_rpc/v1/reports/binary", post(binary_report))
        .with_state(Route {
            intake,
            max_message_bytes,
        })
}

/// A Thrift body that could not be read: counted as a malformed Lightstep report, as the
/// intake counts its own.
fn malformed(route: &Route, error: ThriftError) -> Refused {
    route.intake.lightstep_malformed();
    tracing::debug!(%error, "refused malformed Thrift report");
    Refused::bad_request(error)
}

/// Reads the body (limit, then `Content-Encoding`).
async fn body_of(route: &Route, request: Request) -> Result<(http::HeaderMap, Bytes), Refused> {
    let (parts, body) = request.into_parts();
    let body = collect_limited(body, route.max_message_bytes).await?;
    let body = decoded_body(&parts.headers, body, route.max_message_bytes)?;
    Ok((parts.headers, body))
}

/// Hands a converted report to the intake.
fn ingest(
    route: &Route,
    request: pb::ReportRequest,
    header_token: Option<&[u8]>,
) -> Result<(), Refused> {
    route
        .intake
        .lightstep_report(Bytes::from(request.encode_to_vec()), header_token)?;
    Ok(())
}

async fn json_report(State(route): State<Route>, request: Request) -> Result<Response, Refused> {
    let received = SystemTime::now();
    let (headers, body) = body_of(&route, request).await?;
    // These clients send the token only in the header.
    let header_token = auth::header_token(&headers);
    let token = header_token.map(|t| String::from_utf8_lossy(t).into_owned());
    let request = parse_json(&body)
        .and_then(|report| to_report_request(report, token))
        .map_err(|error| malformed(&route, error))?;
    ingest(&route, request, header_token)?;
    // The JS tracer feeds `timing` to its clock filter; `errors` must stay empty on success.
    let body = serde_json::json!({
        "timing": {
            "receive_micros": micros(received),
            "transmit_micros": micros(SystemTime::now()),
        },
        "commands": [],
        "errors": [],
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

async fn binary_report(State(route): State<Route>, request: Request) -> Result<Response, Refused> {
    let received = SystemTime::now();
    let (headers, body) = body_of(&route, request).await?;
    let call = binary::read_call(&body).map_err(|error| malformed(&route, error))?;
    let header_token = auth::header_token(&headers);
    let token = call
        .access_token
        .or_else(|| header_token.map(|t| String::from_utf8_lossy(t).into_owned()));
    let request =
        to_report_request(call.report, token).map_err(|error| malformed(&route, error))?;
    ingest(&route, request, header_token)?;
    let reply = binary::write_reply(
        &call.name,
        call.seqid,
        micros(received),
        micros(SystemTime::now()),
    )
    .map_err(|error| malformed(&route, error))?;
    Ok(([(header::CONTENT_TYPE, "application/x-thrift")], reply).into_response())
}
