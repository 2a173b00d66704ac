//! OTLP/HTTP: `POST /v1/traces` (and the legacy `/traces/otlp/v0.9`), protobuf or JSON.
//! Errors are a `google.rpc.Status` in the request's encoding.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use crate::ingest::auth;
use crate::ingest::http::{BodyError, Route, media_type};
use crate::ingest::intake::Intake;
use crate::ingest::refused::Refused;
use crate::pipeline::Protocol;

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The OTLP/HTTP routes.
pub fn routes(intake: Arc<Intake>, max_message_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/v1/traces", post(export))
        .route("/traces/otlp/v0.9", post(export))
        .with_state(Route {
            intake,
            max_message_bytes,
        })
}

/// `google.rpc.Status`, the body of OTLP/HTTP errors.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn export(State(route): State<Route>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let encoding = match media_type(&headers).as_str() {
        PROTOBUF | "application/protobuf" => Encoding::Protobuf,
        JSON => Encoding::Json,
        other => {
            let error = BodyError::MediaType {
                found: other.to_owned(),
                expected: "application/x-protobuf or application/json",
            };
            return reply_error(Encoding::Protobuf, error.into());
        }
    };
    match take(&route, &headers, body, encoding).await {
        Ok(()) => reply(
            encoding,
            StatusCode::OK,
            &ExportTraceServiceResponse::default(),
            "{}",
        ),
        Err(refused) => reply_error(encoding, refused),
    }
}

/// Decodes the body and hands the protobuf request to the intake.
async fn take(
    route: &Route,
    headers: &HeaderMap,
    body: axum::body::Body,
    encoding: Encoding,
) -> Result<(), Refused> {
    let (body, charge) = route.read_body(Protocol::Otlp, headers, body).await?;
    let body = match encoding {
        Encoding::Protobuf => body,
        Encoding::Json => json_to_protobuf(&body)?,
    };
    route
        .intake
        .otlp_export(body, auth::header_token(headers), charge)?;
    Ok(())
}

fn reply(encoding: Encoding, status: StatusCode, message: &impl Message, json: &str) -> Response {
    let (content_type, body) = match encoding {
        Encoding::Protobuf => (PROTOBUF, Bytes::from(message.encode_to_vec())),
        Encoding::Json => (JSON, Bytes::from(json.to_owned())),
    };
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn reply_error(encoding: Encoding, refused: Refused) -> Response {
    let status = refused.http_status();
    let code = refused.grpc_code() as i32;
    let message = refused.message().to_owned();
    let json = serde_json::json!({ "code": code, "message": message }).to_string();
    reply(encoding, status, &RpcStatus { code, message }, &json)
}

/// OTLP JSON -> protobuf. Ids are hex, 64-bit integers strings or numbers, enums numbers
/// or their names (`SPAN_KIND_SERVER`, `STATUS_CODE_ERROR`).
pub fn json_to_protobuf(json: &[u8]) -> Result<Bytes, BodyError> {
    let invalid = |e: serde_json::Error| BodyError::Invalid(format!("invalid OTLP JSON: {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(json).map_err(invalid)?;
    enum_names_to_numbers(&mut value);
    let request: ExportTraceServiceRequest = serde_json::from_value(value).map_err(invalid)?;
    Ok(Bytes::from(request.encode_to_vec()))
}

fn enum_names_to_numbers(value: &mut serde_json::Value) {
    use serde_json::Value;
    let spans = value
        .get_mut("resourceSpans")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(|rs| rs.get_mut("scopeSpans").and_then(Value::as_array_mut))
        .flatten()
        .filter_map(|ss| ss.get_mut("spans").and_then(Value::as_array_mut))
        .flatten();
    for span in spans {
        if let Some(kind) = span.get_mut("kind") {
            rename(
                kind,
                &[
                    "SPAN_KIND_UNSPECIFIED",
                    "SPAN_KIND_INTERNAL",
                    "SPAN_KIND_SERVER",
                    "SPAN_KIND_CLIENT",
                    "SPAN_KIND_PRODUCER",
                    "SPAN_KIND_CONSUMER",
                ],
            );
        }
        if let Some(code) = span.get_mut("status").and_then(|s| s.get_mut("code")) {
            rename(
                code,
                &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
            );
        }
    }
}

/// Replaces an enum name with its number; unknown names are left for serde to refuse.
fn rename(value: &mut serde_json::Value, names: &[&str]) {
    if let Some(n) = value
        .as_str()
        .and_then(|s| names.iter().position(|name| *name == s))
    {
        *value = serde_json::Value::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hexid::encode as hex;

    #[test]
    fn otlp_json_with_names_strings_and_hex_ids() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
            "scopeSpans":[{"scope":{"name":"t"},"spans":[{
                "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
                "parentSpanId":"eee19b7ec3c1b173","name":"GET /","kind":"SPAN_KIND_SERVER",
                "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":1544712661000000000,
                "attributes":[{"key":"n","value":{"intValue":"42"}}],
                "status":{"code":"STATUS_CODE_ERROR","message":"boom"}}]}]}]}"#;
        let bytes = json_to_protobuf(json).unwrap();
        let req = ExportTraceServiceRequest::decode(bytes).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(hex(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(hex(&span.parent_span_id), "eee19b7ec3c1b173");
        assert_eq!(span.kind, 2);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    }

    #[test]
    fn bad_json_is_named() {
        for bad in [
            &b"{"[..],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
        ] {
            let err = json_to_protobuf(bad).unwrap_err().to_string();
            assert!(err.contains("invalid OTLP JSON"), "{err}");
        }
    }
}
