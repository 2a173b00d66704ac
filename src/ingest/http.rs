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
        IngestError::Malformed(_) | IngestError::MalformedOtlp(_) => StatusCode::BAD_REQUEST,
        IngestError::Unavailable(PushError::Full { .. } | PushError::Closed) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
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
pub fn text_error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut response = (status, message.into() + "\n").into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
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
            "no route {} {}: cubesat ingests gRPC Report/Export and POST /v1/traces",
            request.method(),
            request.uri().path()
        ),
    )
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
