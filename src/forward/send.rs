//! One upstream gRPC call with the batch's bytes handed to HTTP/2 as they are: the 5-byte
//! gRPC prefix and the batch header in one small chunk, then every span run as its own chunk,
//! each a reference to the buffer the client's request arrived in. h2 chains chunks of this
//! size instead of copying them and writes them with one vectored write, so a span's bytes
//! are copied once on the way out: by the kernel, into the socket.
//!
//! tonic's client codec would encode the message into its own buffer first (one more copy of
//! every span, and a page-faulting allocation the size of the batch); the profile of the
//! forward path put that at about 3-4% of cubesat's CPU. The call still goes through tonic's
//! `Channel` (connection pool, TLS, reconnects); only the message framing and the status
//! parsing are done here, following the gRPC over HTTP/2 specification.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tower::ServiceExt;

use super::error::{ErrorSource, ForwardError};
use crate::pipeline::{Batch, TOKEN_HEADER};

/// Sends `batch` as one unary call of its protocol's method and returns the reply message.
pub async fn unary(
    channel: Channel,
    batch: Arc<Batch>,
    timeout: Duration,
) -> Result<Bytes, ForwardError> {
    let request = request(batch, timeout)?;
    let call = async {
        let service = channel.ready_oneshot().await.map_err(connection_error)?;
        let response = service.oneshot(request).await.map_err(connection_error)?;
        read_reply(response).await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(ForwardError {
            code: Code::DeadlineExceeded,
            message: format!("no answer within {}", humantime::format_duration(timeout)),
            origin: ErrorSource::Connection,
        }),
    }
}

/// The request: only the path is set; the `Channel` adds the upstream's scheme and authority.
fn request(
    batch: Arc<Batch>,
    timeout: Duration,
) -> Result<http::Request<tonic::body::Body>, ForwardError> {
    let uri = http::Uri::from_static(batch.key.protocol.grpc_path());
    let mut builder = http::Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-timeout", grpc_timeout(timeout));
    // A token that is not a valid header value was refused at ingest; an empty one (the
    // configured token only travels in the body) is not sent.
    if let Ok(token) = HeaderValue::from_bytes(&batch.key.token)
        && !batch.key.token.is_empty()
    {
        let mut token = token;
        token.set_sensitive(true);
        builder = builder.header(TOKEN_HEADER, token);
    }
    builder
        .body(tonic::body::Body::new(BatchBody::new(batch)))
        .map_err(|error| ForwardError {
            code: Code::Internal,
            message: format!("cannot build the upstream request: {error}"),
            origin: ErrorSource::Connection,
        })
}

/// `grpc-timeout` in milliseconds (at most 8 digits, as the specification requires).
fn grpc_timeout(timeout: Duration) -> String {
    format!("{}m", timeout.as_millis().clamp(1, 99_999_999))
}

/// The request body: the gRPC prefix with the batch header, then each span run.
struct BatchBody {
    batch: Arc<Batch>,
    /// The next chunk: 0 = prefix and header, `i + 1` = run `i`.
    next: usize,
    remaining: u64,
}

impl BatchBody {
    fn new(batch: Arc<Batch>) -> Self {
        let remaining = 5 + batch.encoded_len() as u64;
        Self {
            batch,
            next: 0,
            remaining,
        }
    }
}

impl Body for BatchBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let chunk = if this.next == 0 {
            let len = this.batch.encoded_len();
            let mut head = BytesMut::with_capacity(5 + this.batch.header.len());
            head.put_u8(0); // not compressed
            // A batch never exceeds --max-message-bytes, far below 4 GiB.
            head.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
            head.put_slice(&this.batch.header);
            head.freeze()
        } else {
            match this.batch.runs.get(this.next - 1) {
                Some(run) => run.clone(),
                None => return Poll::Ready(None),
            }
        };
        this.next += 1;
        this.remaining = this.remaining.saturating_sub(chunk.len() as u64);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.next > self.batch.runs.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn connection_error(error: tonic::transport::Error) -> ForwardError {
    ForwardError {
        code: Code::Unavailable,
        message: crate::forward::client::error_chain(&error),
        origin: ErrorSource::Connection,
    }
}

/// Reads the reply: the HTTP status, the message, and `grpc-status` from the trailers (or
/// from the headers of a trailers-only reply).
async fn read_reply(response: http::Response<tonic::body::Body>) -> Result<Bytes, ForwardError> {
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return status_result(&status, Bytes::new());
    }
    if parts.status != StatusCode::OK {
        return Err(http_status_error(parts.status));
    }
    let collected = body.collect().await.map_err(|status| ForwardError {
        code: Code::Unavailable,
        message: format!("reading the reply: {}", status.message()),
        origin: ErrorSource::Connection,
    })?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let message = message_of(&data)?;
    match Status::from_header_map(&trailers) {
        Some(status) => status_result(&status, message),
        None => Err(missing_status()),
    }
}

fn status_result(status: &Status, message: Bytes) -> Result<Bytes, ForwardError> {
    if status.code() == Code::Ok {
        Ok(message)
    } else {
        Err(ForwardError {
            code: status.code(),
            message: status.message().to_owned(),
            origin: ErrorSource::Upstream,
        })
    }
}

/// The one message of a unary reply (empty when the upstream sent none).
fn message_of(data: &Bytes) -> Result<Bytes, ForwardError> {
    if data.is_empty() {
        return Ok(Bytes::new());
    }
    let malformed = |what: &str| ForwardError {
        code: Code::Internal,
        message: format!("malformed reply from the upstream: {what}"),
        origin: ErrorSource::Upstream,
    };
    let [flag, a, b, c, d, ..] = data[..] else {
        return Err(malformed("shorter than the gRPC prefix"));
    };
    if flag != 0 {
        return Err(malformed("compressed, but none was asked for"));
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    data.get(5..5 + len)
        .map(|_| data.slice(5..5 + len))
        .ok_or_else(|| malformed("message shorter than its prefix"))
}

fn missing_status() -> ForwardError {
    ForwardError {
        code: Code::Internal,
        message: "the upstream's reply ended without grpc-status".into(),
        origin: ErrorSource::Connection,
    }
}

/// What a reply without `grpc-status` means, by its HTTP status (the gRPC specification's
/// table, used for proxies and load balancers that answer in plain HTTP).
fn http_status_error(status: StatusCode) -> ForwardError {
    let code = match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    };
    ForwardError {
        code,
        message: format!("the upstream answered HTTP {status} without a gRPC status"),
        origin: ErrorSource::Upstream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{BatchKey, Budget, Part, Protocol};

    fn batch(runs: &[&'static [u8]]) -> Arc<Batch> {
        let budget = Budget::new(1 << 20, 0.9, 0.8);
        Arc::new(Batch {
            key: BatchKey {
                protocol: Protocol::Lightstep,
                token: Bytes::from_static(b"t"),
                reporter: Bytes::new(),
                timestamp_offset_micros: 0,
            },
            header: Bytes::from_static(b"\x0a\x00"),
            runs: runs.iter().map(|r| Bytes::from_static(r)).collect(),
            spans: runs.len() as u32,
            charge: budget.reserve(Part::Batches, 8, 2).unwrap(),
            spooled: Default::default(),
        })
    }

    #[tokio::test]
    async fn body_is_prefix_header_then_runs_without_copies() {
        let batch = batch(&[b"\x22\x01a", b"\x22\x01b"]);
        let first_run = batch.runs[0].as_ptr();
        let mut body = BatchBody::new(batch.clone());
        assert_eq!(body.size_hint().exact(), Some(5 + 2 + 6));
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        assert!(body.is_end_stream());
        assert_eq!(&chunks[0][..], b"\x00\x00\x00\x00\x08\x0a\x00");
        assert_eq!(
            chunks[1].as_ptr(),
            first_run,
            "a run is sent as a reference"
        );
        let all: Vec<u8> = chunks.concat();
        assert_eq!(&all[5..], b"\x0a\x00\x22\x01a\x22\x01b");
    }

    #[test]
    fn reply_message_and_statuses() {
        let reply = Bytes::from_static(b"\x00\x00\x00\x00\x02\x08\x01");
        assert_eq!(&message_of(&reply).unwrap()[..], b"\x08\x01");
        assert!(message_of(&Bytes::from_static(b"\x00\x00\x00\x00\x09\x08")).is_err());
        assert!(message_of(&Bytes::from_static(b"\x01\x00\x00\x00\x00")).is_err());
        assert_eq!(
            http_status_error(StatusCode::SERVICE_UNAVAILABLE).code,
            Code::Unavailable
        );
        assert_eq!(
            http_status_error(StatusCode::UNAUTHORIZED).code,
            Code::Unauthenticated
        );
        assert_eq!(grpc_timeout(Duration::from_secs(30)), "30000m");
    }
}
