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
pub mod meter;
mod model;
#[cfg(test)]
pub use model::parse_json;
pub use model::parse_json_metered as model_parse_json;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;

use crate::ingest::http::Route;
use crate::ingest::intake::Intake;
use crate::ingest::intake::RefusalReason;
use crate::ingest::refused::Refused;
use crate::ingest::{auth, blocking};
use crate::pipeline::{Charge, Protocol, REQUEST_OVERHEAD};
use crate::proto::collector as pb;
use meter::ModelMeter;
use tonic::Code;

use convert::micros;
pub use convert::to_report_request;
pub use model::{
    KeyValue, LogRecord, Metrics, MetricsSample, NamedCounter, Runtime, SpanRecord, TagValue,
    ThriftReport, TraceJoinId, parse_json_metered,
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
    /// The decoded report would take more memory than its size allows (a list or object
    /// bomb): refused before it is allocated.
    #[error(
        "the report decodes to more than {limit} bytes ({}x its size): send fewer or fuller elements per report",
        meter::MODEL_EXPANSION
    )]
    TooLarge {
        /// The allowance in bytes.
        limit: usize,
    },
    /// The memory budget cannot hold the decoded report now.
    #[error("cannot decode the report now: {0}")]
    Budget(crate::pipeline::BudgetFull),
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

/// A Thrift body that could not be decoded: counted by the intake as it counts its own
/// refusals (too large, no room in the budget, or malformed).
fn refused(route: &Route, error: ThriftError) -> Refused {
    tracing::debug!(%error, "refused Thrift report");
    match error {
        ThriftError::TooLarge { .. } => {
            route
                .intake
                .count_refused(Protocol::Lightstep, RefusalReason::TooLarge);
            Refused::too_large(error)
        }
        ThriftError::Budget(_) => {
            route
                .intake
                .count_refused(Protocol::Lightstep, RefusalReason::Budget);
            Refused::unavailable(error)
        }
        _ => {
            route.intake.lightstep_malformed();
            Refused::bad_request(error)
        }
    }
}

/// Reads the body (limit, then `Content-Encoding`) and charges it to the budget.
async fn body_of(
    route: &Route,
    request: Request,
) -> Result<(http::HeaderMap, Bytes, Charge), Refused> {
    let (parts, body) = request.into_parts();
    let (body, charge) = route
        .read_body(Protocol::Lightstep, &parts.headers, body)
        .await?;
    Ok((parts.headers, body, charge))
}

/// Decodes `body` with `decode` on the bounded blocking pool, paying for the model and the
/// encoded `ReportRequest` out of `charge`; returns the encoded request, what `decode`
/// returned beside it, and the charge, now covering only the encoded request.
async fn decode_report<X: Send + 'static>(
    route: &Route,
    body: Bytes,
    charge: Charge,
    decode: impl FnOnce(&[u8], &mut ModelMeter) -> Result<(pb::ReportRequest, X), ThriftError>
    + Send
    + 'static,
) -> Result<(Bytes, X, Charge), Refused> {
    let decoded = blocking::decode(move || {
        let mut meter = ModelMeter::new(body.len()).charged(charge);
        let (request, extra) = decode(&body, &mut meter)?;
        let Some(mut charge) = meter.into_charge() else {
            unreachable!("the meter was made charged")
        };
        let len = request.encoded_len();
        charge.try_grow(len).map_err(ThriftError::Budget)?;
        let encoded = Bytes::from(request.encode_to_vec());
        drop((request, body));
        // Only the encoded request (and the request's overhead) is held from here on.
        charge.shrink(charge.bytes().saturating_sub(len + REQUEST_OVERHEAD));
        Ok((encoded, extra, charge))
    })
    .await
    .map_err(|error| {
        Refused::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            error.to_string(),
        )
    })?;
    decoded.map_err(|error| refused(route, error))
}

/// Hands an encoded report to the intake with the charge that pays for it.
fn ingest(
    route: &Route,
    request: Bytes,
    header_token: Option<&[u8]>,
    charge: Charge,
) -> Result<(), Refused> {
    route
        .intake
        .lightstep_report(request, header_token, charge)?;
    Ok(())
}

async fn json_report(State(route): State<Route>, request: Request) -> Result<Response, Refused> {
    let received = SystemTime::now();
    let (headers, body, charge) = body_of(&route, request).await?;
    // These clients send the token only in the header.
    let header_token = auth::header_token(&headers);
    let token = header_token.map(|t| String::from_utf8_lossy(t).into_owned());
    let (request, (), charge) = decode_report(&route, body, charge, |body, meter| {
        Ok((
            to_report_request(parse_json_metered(body, meter)?, token)?,
            (),
        ))
    })
    .await?;
    ingest(&route, request, header_token, charge)?;
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
    let (headers, body, charge) = body_of(&route, request).await?;
    let header_token = auth::header_token(&headers);
    let fallback_token = header_token.map(|t| String::from_utf8_lossy(t).into_owned());
    let (request, (name, seqid), charge) = decode_report(&route, body, charge, |body, meter| {
        let call = binary::read_call_metered(body, meter)?;
        let token = call.access_token.or(fallback_token);
        let request = to_report_request(call.report, token)?;
        Ok((request, (call.name, call.seqid)))
    })
    .await?;
    ingest(&route, request, header_token, charge)?;
    let reply = binary::write_reply(&name, seqid, micros(received), micros(SystemTime::now()))
        .map_err(|error| refused(&route, error))?;
    Ok(([(header::CONTENT_TYPE, "application/x-thrift")], reply).into_response())
}
