//! OTLP/HTTP: `POST /v1/traces` (and the legacy `/traces/otlp/v0.9`), protobuf or JSON.
//! Errors are a `google.rpc.Status` in the request's encoding. A JSON body's decoded model is
//! charged before it is built and built on the blocking pool ([`crate::ingest::json`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::json::{EXPORT_JSON, json_to_protobuf};

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

/// Reads the body (JSON decoded on the blocking pool, its model charged first) and hands the
/// protobuf request to the intake.
async fn take(
    route: &Route,
    headers: &HeaderMap,
    body: axum::body::Body,
    encoding: Encoding,
) -> Result<(), Refused> {
    let (body, charge) = route.read_body(Protocol::Otlp, headers, body).await?;
    let (body, charge) = match encoding {
        Encoding::Protobuf => (body, charge),
        Encoding::Json => {
            EXPORT_JSON
                .decode(route, Protocol::Otlp, body, charge, json_to_protobuf)
                .await?
        }
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
