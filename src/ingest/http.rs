//! Plumbing shared by the HTTP (non-gRPC) ingest routes: the body limit, `Content-Encoding`,
//! media types, CORS, and the answer for unknown paths. Refusals are answered through
//! [`Refused`].

use std::io::Read;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};

use super::refused::Refused;
use super::region::BodyBuffer;
use crate::pipeline::{Arena, Budget, BudgetFull, Charge, Part, REQUEST_OVERHEAD};

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
    /// The memory budget cannot hold the body now; retry later.
    #[error("cannot take the request body now: {0}")]
    Budget(#[from] BudgetFull),
}

/// Decompressed output is read and charged in steps of this size.
const INFLATE_STEP: usize = 64 << 10;

/// The declared `Content-Length`, if any.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Collects a request body, charged to `budget` before each byte is allocated: refused at
/// once (413) when `Content-Length` passes `limit`, and (503) when the budget cannot hold the
/// declared size now; a body of unknown length reserves as it grows. A body of declared
/// length without a `Content-Encoding` is read into `region` when it has room
/// ([`BodyBuffer`]). The charge covers the buffer's capacity and [`REQUEST_OVERHEAD`].
pub async fn collect_charged(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &Budget,
    region: Option<&Arena>,
) -> Result<(Bytes, Charge), BodyError> {
    use http_body_util::BodyExt;
    let declared = content_length(headers);
    if declared.is_some_and(|n| n > limit as u64) {
        discard(body, limit).await;
        return Err(BodyError::TooLarge { limit });
    }
    let declared = declared.map_or(0, |n| n as usize);
    let mut charge = budget
        .reserve_waiting(Part::InFlight, REQUEST_OVERHEAD + declared, 0)
        .await?;
    let mut body = body;
    // A body of known length without a Content-Encoding is read straight into the ring's
    // region when it has room (`ingest::region`): its span runs then stay where they were read.
    let identity = headers
        .get(header::CONTENT_ENCODING)
        .is_none_or(|e| e.as_bytes().eq_ignore_ascii_case(b"identity"));
    if declared > 0 && identity {
        let mut buf = BodyBuffer::reserve(declared, region, budget).await;
        while let Some(frame) = buf.next(body.frame()).await {
            let frame =
                frame.map_err(|e| BodyError::Invalid(format!("reading the request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.len() > buf.remaining() {
                return Err(BodyError::Invalid(format!(
                    "the request body is longer than its Content-Length ({declared} bytes)"
                )));
            }
            buf.put(&data);
        }
        return Ok((buf.freeze(), charge));
    }
    let mut buf = BytesMut::with_capacity(declared);
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| BodyError::Invalid(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let need = buf.len() + data.len();
        if need > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if need > buf.capacity() {
            // Double (within the limit), paying for the new capacity before allocating it.
            let capacity = need.max(buf.capacity().saturating_mul(2)).min(limit);
            charge.try_grow(capacity - buf.capacity())?;
            buf.reserve(capacity - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), charge))
}

impl Route {
    /// Reads a request body of `protocol` within the limit and the budget, then undoes its
    /// `Content-Encoding`; returns it with the in-flight charge that pays for it. Refusals for
    /// size and for room are counted by reason.
    pub async fn read_body(
        &self,
        protocol: crate::pipeline::Protocol,
        headers: &HeaderMap,
        body: axum::body::Body,
    ) -> Result<(Bytes, Charge), BodyError> {
        let limit = self.max_message_bytes;
        let ring = self.intake.ring();
        let read = async {
            let (body, mut charge) =
                collect_charged(body, headers, limit, ring.budget(), ring.arena()).await?;
            let body = decoded_body(headers, body, limit, &mut charge)?;
            Ok((body, charge))
        };
        read.await.inspect_err(|error| {
            let reason = match error {
                BodyError::TooLarge { .. } => super::intake::RefusalReason::TooLarge,
                BodyError::Budget(_) => super::intake::RefusalReason::Budget,
                _ => return,
            };
            tracing::debug!(%error, "refused request body");
            self.intake.count_refused(protocol, reason);
        })
    }
}

/// Reads and drops up to `limit` bytes of a refused body (for at most a second), so a client
/// that writes its whole body before reading the answer sees the 413 instead of a reset.
/// Nothing is kept: each frame is dropped as it arrives.
async fn discard(mut body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > limit {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

/// The request body after `Content-Encoding`, never past `limit` bytes; the decompressed
/// output is paid out of `charge` as it grows, and the compressed input given back after.
pub fn decoded_body(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, BodyError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let compression = match encoding.as_str() {
        "" | "identity" => {
            return if body.len() > limit {
                Err(BodyError::TooLarge { limit })
            } else {
                Ok(body)
            };
        }
        "gzip" | "x-gzip" => Compression::Gzip,
        "deflate" => Compression::Deflate,
        other => return Err(BodyError::Encoding(other.to_owned())),
    };
    inflate(compression, body, limit, charge)
}

/// A compression a request body (or gRPC message) may arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`Content-Encoding: gzip`, `grpc-encoding: gzip`).
    Gzip,
    /// zlib (`Content-Encoding: deflate`).
    Deflate,
}

/// Inflates `body`, never past `limit` bytes: the output is paid out of `charge` before it is
/// allocated, step by step, and the compressed input given back after.
pub fn inflate(
    compression: Compression,
    body: Bytes,
    limit: usize,
    charge: &mut Charge,
) -> Result<Bytes, BodyError> {
    let (name, mut reader): (&'static str, Box<dyn Read + '_>) = match compression {
        Compression::Gzip => ("gzip", Box::new(flate2::read::GzDecoder::new(&body[..]))),
        Compression::Deflate => (
            "deflate",
            Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        ),
    };
    // Read in steps, each paid for first, one byte past the limit to tell "exactly at" from
    // "over" (a zip bomb stops here).
    let mut out: Vec<u8> = Vec::new();
    loop {
        let step = INFLATE_STEP.min(limit + 1 - out.len());
        if out.capacity() < out.len() + step {
            let capacity = (out.len() + step).max(out.capacity() * 2).min(limit + 1);
            charge.try_grow(capacity - out.capacity())?;
            out.reserve_exact(capacity - out.len());
        }
        let read = (&mut reader)
            .take(step as u64)
            .read_to_end(&mut out)
            .map_err(|e| BodyError::Corrupt {
                encoding: name,
                message: e.to_string(),
            })?;
        if out.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        if read == 0 || out.len() == limit + 1 {
            break;
        }
    }
    let compressed = body.len();
    drop(reader);
    drop(body);
    charge.shrink(compressed);
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

    fn charge() -> Charge {
        Budget::new(64 << 20, 0.9, 0.5)
            .reserve(Part::InFlight, 0, 0)
            .unwrap()
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
            decoded_body(&headers("gzip"), body.clone(), 5, &mut charge()).unwrap(),
            "hello"
        );
        assert!(matches!(
            decoded_body(&headers("gzip"), body, 4, &mut charge()),
            Err(BodyError::TooLarge { limit: 4 })
        ));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let body = gzip(&vec![0u8; 10 << 20]);
        assert!(body.len() < 64 << 10);
        assert!(matches!(
            decoded_body(&headers("gzip"), body, 1 << 20, &mut charge()),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn bad_encodings_are_named() {
        let err =
            decoded_body(&headers("br"), Bytes::from_static(b"x"), 10, &mut charge()).unwrap_err();
        assert!(err.to_string().contains("br"));
        let err = decoded_body(
            &headers("gzip"),
            Bytes::from_static(b"nope"),
            10,
            &mut charge(),
        )
        .unwrap_err();
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

    #[tokio::test]
    async fn a_body_of_declared_length_is_read_into_the_region_and_a_compressed_one_is_not() {
        let budget = Budget::new(1 << 20, 0.9, 0.5);
        let region = Arena::new(1 << 16).unwrap();
        let read = |headers: HeaderMap, body: &'static [u8]| {
            let mut headers = headers;
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let body = axum::body::Body::from(body);
            let (budget, region) = (budget.clone(), region.clone());
            async move { collect_charged(body, &headers, 1 << 10, &budget, Some(&region)).await }
        };
        let (body, charge) = read(HeaderMap::new(), b"spans").await.unwrap();
        assert_eq!(body, "spans");
        assert!(region.holds(&body));
        assert_eq!(charge.bytes(), REQUEST_OVERHEAD + 5);
        let (body, _) = read(headers("gzip"), b"zipped").await.unwrap();
        assert!(
            !region.holds(&body),
            "inflated right after: read to the heap"
        );
        let mut lying = HeaderMap::new();
        lying.insert(header::CONTENT_LENGTH, HeaderValue::from(2));
        let error = collect_charged(
            axum::body::Body::from(&b"longer"[..]),
            &lying,
            1 << 10,
            &budget,
            Some(&region),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("Content-Length"), "{error}");
    }
}
