//! Plumbing shared by the HTTP (non-gRPC) ingest routes: the body limit, `Content-Encoding`,
//! media types, CORS, and the answer for unknown paths. Refusals are answered through
//! [`Refused`].

use std::io::Read;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;

use super::refused::Refused;

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

/// Permissive CORS for browser tracers: any origin, POST, and the token header.
pub fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::mirror_request())
        .allow_methods([axum::http::Method::POST, axum::http::Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::ACCEPT,
            header::HeaderName::from_static(super::auth::TOKEN_HEADER),
        ])
        .max_age(std::time::Duration::from_secs(86_400))
}

/// For unknown paths: gRPC clients get `UNIMPLEMENTED`, everyone else a 404 naming the routes.
pub async fn fallback(request: axum::extract::Request) -> Response {
    let is_grpc = media_type(request.headers()).starts_with("application/grpc");
    if is_grpc {
        let status = tonic::Status::unimplemented(format!("no method {}", request.uri().path()));
        return status.into_http::<axum::body::Body>();
    }
    Refused::new(
        StatusCode::NOT_FOUND,
        tonic::Code::Unimplemented,
        format!(
            "no route {} {}: cubesat ingests gRPC Report/Export, POST /api/v2/reports, /api/v0/reports, /_rpc/v1/reports/binary and /v1/traces",
            request.method(),
            request.uri().path()
        ),
    )
    .text_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;

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
        assert_eq!(Refused::from(err).http_status(), StatusCode::BAD_REQUEST);
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
