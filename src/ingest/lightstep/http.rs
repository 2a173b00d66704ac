//! Lightstep's HTTP transport: `POST /api/v2/reports`, protobuf or proto3 JSON, or the
//! chunked streaming upload of the C++ tracer (read by [`super::stream`]).
//!
//! Error bodies are short plain text and never empty: the Python Lightstep tracer ignores the
//! status and parses the body, and an empty body would read as success.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use super::grpc::report_response;
use super::stream;
use crate::ingest::auth;
use crate::ingest::http::{BodyError, Route, media_type};
use crate::ingest::intake::Intake;
use crate::ingest::json::JsonModel;
use crate::ingest::refused::Refused;
use crate::pipeline::Protocol;

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
        REPORT_JSON
            .decode(route, Protocol::Lightstep, body, charge, json_to_protobuf)
            .await?
    } else {
        (body, charge)
    };
    route.intake.lightstep_report(body, header_token, charge)?;
    Ok(())
}

/// What the prost-reflect model of a JSON report takes: per object a message and its field
/// map (about 1.1 KiB measured), per other key or value 128 bytes.
const REPORT_JSON: JsonModel = JsonModel {
    what: "JSON report",
    object_cost: 1536,
    token_cost: 128,
};

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
    fn json_reply_has_the_timestamps() {
        let response = reply(true, SystemTime::now());
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
    }
}
