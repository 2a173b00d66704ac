//! Plumbing shared by the HTTP (non-gRPC) ingest routes: the body limit, `Content-Encoding`,
//! media types, and the one mapping from ingest errors to HTTP status codes.
//!
//! Error bodies are short plain text and never empty: the Python Lightstep tracer ignores the
//! status and parses the body, and an empty body would read as success.

use std::io::Read;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::intake::IngestError;
use crate::pipeline::PushError;

/// What every HTTP ingest route needs: the door into the pipeline and the body size limit.
#[derive(Clone)]
pub struct Route {
    /// Where accepted reports go.
    pub intake: std::sync::Arc<super::intake::Intake>,
    /// Bodies larger than this (after decompression) get 413.
    pub max_message_bytes: usize,
}

/// Why an HTTP request body could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than `max-message-bytes` (after decompression).
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// `Content-Encoding` other than gzip / deflate / identity.
    #[error("unsupported Content-Encoding {0:?}: send gzip, deflate or identity")]
    Encoding(String),
    /// The gzip stream is broken.
    #[error("body is not valid {encoding}: {message}")]
    Corrupt {
        /// The encoding.
        encoding: &'static str,
        /// What the decoder said.
        message: String,
    },
    /// A media type the route does not take.
    #[error("unsupported Content-Type {found:?}: send {expected}")]
    MediaType {
        /// What came.
        found: String,
        /// What the route takes.
        expected: &'static str,
    },
    /// The body could not be decoded as the media type says.
    #[error("{0}")]
    Invalid(String),
}

/// The request body after `Content-Encoding`, never past `limit` bytes.
pub fn decoded_body(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let (name, mut reader): (&'static str, Box<dyn Read + '_>) = match encoding.as_str() {
        "" | "identity" => {
            return if body.len() > limit {
                Err(BodyError::TooLarge { limit })
            } else {
                Ok(body)
            };
        }
        "gzip" | "x-gzip" => ("gzip", Box::new(flate2::read::GzDecoder::new(&body[..]))),
        "deflate" => (
            "deflate",
            Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        ),
        other => return Err(BodyError::Encoding(other.to_owned())),
    };
    // Read one byte past the limit to tell "exactly at" from "over" (a zip bomb stops here).
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Corrupt {
            encoding: name,
            message: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// The media type of `Content-Type`, lowercased, without parameters.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The HTTP status for an ingest error.
pub fn status_of(error: &IngestError) -> StatusCode {
    match error {
        IngestError::Malformed(_)
        | IngestError::MalformedOtlp(_)
        | IngestError::Untranslatable(_) => StatusCode::BAD_REQUEST,
        IngestError::Unavailable(PushError::Full { .. } | PushError::Closed) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        IngestError::Token(_) => StatusCode::UNAUTHORIZED,
    }
}

/// The HTTP status for a body error.
pub fn body_status(error: &BodyError) -> StatusCode {
    match error {
        BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::MediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        BodyError::Encoding(_) | BodyError::Corrupt { .. } | BodyError::Invalid(_) => {
            StatusCode::BAD_REQUEST
        }
    }
}

/// A plain-text error reply; 503s say when to come back.
///
/// The text always starts with `Failed:`. The Python Lightstep tracer ignores the status and
/// parses the body as a `ReportResponse`; `F` (0x46) is a tag with wire type 6, which does not
/// exist, so the body can never parse as a success and the tracer keeps its spans.
pub fn text_error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let mut response = (status, format!("Failed: {message}\n")).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Collects a request body, refusing it past `limit` bytes (before decompression).
pub async fn collect_limited(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Invalid(format!("reading the request body: {e}"))
            }
        })
}

/// Which browser origins may send spans (CORS), from configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS: browsers may not post cross-origin (serve mode's default).
    #[default]
    Off,
    /// Any origin (developer mode on a loopback listener, or `*` configured).
    Any,
    /// Exactly these origins; any other `Origin` gets no CORS headers back.
    List(Vec<HeaderValue>),
}

/// The CORS layer for browser tracers: POST and the token header, from the allowed origins
/// only; `None` when no origin is allowed. A foreign `Origin` is never echoed.
pub fn cors(origins: &CorsOrigins) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = match origins {
        CorsOrigins::Off => return None,
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
            .allow_headers([
                header::CONTENT_TYPE,
                header::CONTENT_ENCODING,
                header::ACCEPT,
                header::HeaderName::from_static(super::auth::TOKEN_HEADER),
            ])
            .max_age(std::time::Duration::from_secs(86_400)),
    )
}

/// For unknown paths: gRPC clients get `UNIMPLEMENTED`, everyone else a 404 naming the routes.
pub async fn fallback(request: axum::extract::Request) -> Response {
    let is_grpc = media_type(request.headers()).starts_with("application/grpc");
    if is_grpc {
        let status = tonic::Status::unimplemented(format!("no method {}", request.uri().path()));
        return status.into_http::<axum::body::Body>();
    }
    text_error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {} {}: cubesat ingests gRPC Report/Export, POST /api/v2/reports, /api/v0/reports, /_rpc/v1/reports/binary and /v1/traces",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Lightstep's HTTP transport: `POST /api/v2/reports`, protobuf or proto3 JSON, or the
/// chunked streaming upload of the C++ tracer.
pub mod lightstep {
    use std::sync::{Arc, LazyLock};
    use std::time::SystemTime;

    use axum::extract::{Request, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use bytes::Bytes;
    use prost::Message;
    use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

    use super::Route;
    use super::{
        BodyError, body_status, collect_limited, decoded_body, media_type, status_of, text_error,
    };
    use crate::ingest::auth;
    use crate::ingest::grpc::report_response;
    use crate::ingest::intake::Intake;
    use crate::ingest::stream::{self, StreamError};

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
                Err(StreamError::Ingest(error)) => text_error(status_of(&error), error),
                Err(error @ StreamError::TooLarge { .. }) => {
                    text_error(StatusCode::PAYLOAD_TOO_LARGE, error)
                }
                Err(error) => text_error(StatusCode::BAD_REQUEST, error),
            };
        }

        let body = match collect_limited(body, route.max_message_bytes)
            .await
            .and_then(|body| {
                let body = decoded_body(headers, body, route.max_message_bytes)?;
                if json_in {
                    json_to_protobuf(&body)
                } else {
                    Ok(body)
                }
            }) {
            Ok(body) => body,
            Err(error) => return text_error(body_status(&error), error),
        };
        match route.intake.lightstep_report(body, header_token.as_deref()) {
            Ok(_) => reply(json_out, received),
            Err(error) => text_error(status_of(&error), error),
        }
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
        accept.contains(JSON)
            || (json_in && !accept.contains(PROTOBUF) && !accept.contains("protobuf"))
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
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap().into()
    }

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_str(encoding).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_inflated_within_the_limit() {
        let body = gzip(b"hello");
        assert_eq!(
            decoded_body(&headers("gzip"), body.clone(), 5).unwrap(),
            "hello"
        );
        assert!(matches!(
            decoded_body(&headers("gzip"), body, 4),
            Err(BodyError::TooLarge { limit: 4 })
        ));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let body = gzip(&vec![0u8; 10 << 20]);
        assert!(body.len() < 64 << 10);
        assert!(matches!(
            decoded_body(&headers("gzip"), body, 1 << 20),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_encodings_are_named() {
        let err = decoded_body(&headers("br"), Bytes::from_static(b"x"), 10).unwrap_err();
        assert!(err.to_string().contains("br"));
        let err = decoded_body(&headers("gzip"), Bytes::from_static(b"nope"), 10).unwrap_err();
        assert_eq!(body_status(&err), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn media_type_drops_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert_eq!(media_type(&h), "application/json");
    }
}
