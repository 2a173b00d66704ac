//! Lightstep's HTTP transport: `POST /api/v2/reports`, protobuf or proto3 JSON, or the
//! chunked streaming upload of the C++ tracer (read by [`super::stream`]).
//!
//! Error bodies are short plain text and never empty: the Python Lightstep tracer ignores the
//! status and parses the body, and an empty body would read as success.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::grpc::report_response;
use super::stream;
use crate::ingest::http::{BodyError, Route, media_type};
use crate::ingest::intake::{Intake, RefusalReason};
use crate::ingest::refused::Refused;
use crate::ingest::{auth, blocking};
use crate::pipeline::{Charge, Protocol, REQUEST_OVERHEAD};

const PROTOBUF: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// The Lightstep HTTP routes.
pub fn routes(intake: Arc<Intake>, max_message_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/api/v2/reports", post(report))
        .with_state(Route {
            intake,
            max_message_bytes,
        })
}

async fn report(State(route): State<Route>, request: Request) -> Response {
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let json_in = media_type(headers) == JSON;
    let json_out = wants_json(headers, json_in);
    let header_token = auth::header_token(headers).map(Bytes::copy_from_slice);

    if is_chunked(headers) && !json_in && headers.get(header::CONTENT_ENCODING).is_none() {
        return match stream::upload(&route.intake, header_token, body, route.max_message_bytes)
            .await
        {
            // The C++ recorder reads the answer, then EOF: close after replying.
            Ok(()) => {
                let mut response = reply(json_out, received);
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                response
            }
            Err(error) => Refused::from(error).text_response(),
        };
    }
    match take(&route, headers, body, json_in, header_token.as_deref()).await {
        Ok(()) => reply(json_out, received),
        Err(refused) => refused.text_response(),
    }
}

/// Reads a whole (not streamed) report and hands it to the intake.
async fn take(
    route: &Route,
    headers: &HeaderMap,
    body: axum::body::Body,
    json_in: bool,
    header_token: Option<&[u8]>,
) -> Result<(), Refused> {
    let (body, charge) = route.read_body(Protocol::Lightstep, headers, body).await?;
    let (body, charge) = if json_in {
        json_report(route, body, charge).await?
    } else {
        (body, charge)
    };
    route.intake.lightstep_report(body, header_token, charge)?;
    Ok(())
}

/// Bytes the decoded JSON model takes per object (a message and its field map: about 1.1 KiB
/// measured with prost-reflect) and per other key or value.
const JSON_OBJECT_COST: usize = 1536;
const JSON_TOKEN_COST: usize = 128;

/// Bytes the decoded JSON model may take per byte of body. Real reports expand about 20x
/// (a span is a handful of small objects); `{}`-element bombs expand 500x.
const JSON_EXPANSION: usize = 64;

/// Floor of the allowance, so tiny reports are never refused for their framing.
const JSON_FLOOR: usize = 256 << 10;

/// What decoding `json` will allocate at most, from its objects and other tokens (counted
/// outside strings, in one pass, without decoding).
fn json_model_bytes(json: &[u8]) -> usize {
    let (mut objects, mut tokens) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => objects += 1,
            b'[' | b',' | b':' => tokens += 1,
            _ => {}
        }
    }
    objects
        .saturating_mul(JSON_OBJECT_COST)
        .saturating_add(tokens.saturating_mul(JSON_TOKEN_COST))
}

/// Decodes a JSON report on the bounded blocking pool, its model paid for (and its element
/// count capped) before it is built; returns the protobuf and the charge, now covering it.
async fn json_report(
    route: &Route,
    body: Bytes,
    mut charge: Charge,
) -> Result<(Bytes, Charge), Refused> {
    let model = json_model_bytes(&body);
    let allowance = body.len().saturating_mul(JSON_EXPANSION).max(JSON_FLOOR);
    if model > allowance {
        route
            .intake
            .count_refused(Protocol::Lightstep, RefusalReason::TooLarge);
        return Err(Refused::too_large(format!(
            "the JSON report decodes to more than {allowance} bytes ({JSON_EXPANSION}x its size): send fewer elements per report"
        )));
    }
    if let Err(full) = charge.try_grow(model) {
        route
            .intake
            .count_refused(Protocol::Lightstep, RefusalReason::Budget);
        return Err(BodyError::Budget(full).into());
    }
    let decoded = blocking::decode(move || json_to_protobuf(&body))
        .await
        .map_err(|error| {
            Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
                error.to_string(),
            )
        })??;
    // The model and the JSON are gone: only the protobuf is held from here on.
    charge.shrink(
        charge
            .bytes()
            .saturating_sub(decoded.len() + REQUEST_OVERHEAD),
    );
    Ok((decoded, charge))
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers.get_all(header::TRANSFER_ENCODING).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .to_ascii_lowercase()
            .contains("chunked")
    })
}

/// JSON replies when asked for by `Accept`, or for a JSON request that accepts anything.
fn wants_json(headers: &HeaderMap, json_in: bool) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    accept.contains(JSON) || (json_in && !accept.contains(PROTOBUF) && !accept.contains("protobuf"))
}

fn reply(json: bool, received: SystemTime) -> Response {
    let response = report_response(received);
    if json {
        let message = DynamicMessage::decode(
            descriptor("ReportResponse"),
            response.encode_to_vec().as_slice(),
        );
        if let Ok(body) = message
            .map_err(|e| e.to_string())
            .and_then(|m| serde_json::to_vec(&m).map_err(|e| e.to_string()))
        {
            return ([(header::CONTENT_TYPE, JSON)], body).into_response();
        }
    }
    ([(header::CONTENT_TYPE, PROTOBUF)], response.encode_to_vec()).into_response()
}

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(crate::proto::COLLECTOR_DESCRIPTOR_SET).ok());

fn descriptor(name: &str) -> MessageDescriptor {
    POOL.as_ref()
        .and_then(|pool| pool.get_message_by_name(&format!("lightstep.collector.{name}")))
        .expect("the collector schema is compiled into the binary")
}

/// proto3 JSON of a `ReportRequest` (camelCase or snake_case keys, 64-bit ints as strings
/// or numbers, RFC 3339 timestamps) -> protobuf. Unknown keys are ignored, as tracers
/// add fields over time.
pub fn json_to_protobuf(json: &[u8]) -> Result<Bytes, BodyError> {
    let options = prost_reflect::DeserializeOptions::new().deny_unknown_fields(false);
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let message = DynamicMessage::deserialize_with_options(
        descriptor("ReportRequest"),
        &mut deserializer,
        &options,
    )
    .and_then(|m| deserializer.end().map(|()| m))
    .map_err(|e| BodyError::Invalid(format!("invalid ReportRequest JSON: {e}")))?;
    Ok(Bytes::from(message.encode_to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::collector as pb;

    #[test]
    fn json_in_both_key_styles() {
        let camel = br#"{"reporter":{"reporterId":"7","tags":[{"key":"lightstep.component_name","stringValue":"web"}]},
            "auth":{"accessToken":"t"},"timestampOffsetMicros":-5,
            "spans":[{"spanContext":{"traceId":"18446744073709551615","spanId":2},"operationName":"GET",
            "startTimestamp":"2026-11-25T10:00:00.5Z","durationMicros":"1500",
            "tags":[{"key":"n","intValue":"3"}],"references":[{"relationship":"CHILD_OF","spanContext":{"spanId":"1"}}]}]}"#;
        let snake = br#"{"reporter":{"reporter_id":7,"tags":[{"key":"lightstep.component_name","string_value":"web"}]},
            "auth":{"access_token":"t"},"timestamp_offset_micros":"-5",
            "spans":[{"span_context":{"trace_id":18446744073709551615,"span_id":"2"},"operation_name":"GET",
            "start_timestamp":"2026-11-25T10:00:00.500Z","duration_micros":1500,
            "tags":[{"key":"n","int_value":3}],"references":[{"relationship":0,"span_context":{"span_id":1}}],"someFutureField":1}]}"#;
        let a = pb::ReportRequest::decode(json_to_protobuf(camel).unwrap()).unwrap();
        let b = pb::ReportRequest::decode(json_to_protobuf(snake).unwrap()).unwrap();
        assert_eq!(a, b);
        let span = &a.spans[0];
        assert_eq!(span.span_context.as_ref().unwrap().trace_id, u64::MAX);
        assert_eq!(span.start_timestamp.unwrap().nanos, 500_000_000);
        assert_eq!(a.timestamp_offset_micros, -5);
        assert_eq!(a.reporter.unwrap().reporter_id, 7);
    }

    #[test]
    fn bad_json_is_refused_with_a_reason() {
        let err = json_to_protobuf(br#"{"spans":[{"durationMicros":"soon"}]}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid ReportRequest JSON"),
            "{err}"
        );
    }

    #[test]
    fn the_json_model_is_estimated_from_its_tokens_outside_strings() {
        assert_eq!(
            json_model_bytes(br#"{"a":"{[,:\"}"}"#),
            JSON_OBJECT_COST + JSON_TOKEN_COST
        );
        let bomb = format!(r#"{{"spans":[{}]}}"#, vec!["{}"; 1000].join(","));
        assert!(json_model_bytes(bomb.as_bytes()) > bomb.len() * JSON_EXPANSION);
    }

    #[test]
    fn json_reply_has_the_timestamps() {
        let response = reply(true, SystemTime::now());
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
    }
}
