//! gRPC `lightstep.collector.CollectorService/Report`: takes the request message as raw bytes
//! (no decode), hands it to the [`Intake`], and answers a `ReportResponse` with receive and
//! transmit timestamps.
//!
//! This file is the one place where ingest errors become gRPC statuses.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use http_body::Body;
use prost::Message;
use tonic::body::Body as TonicBody;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::auth;
use super::intake::{IngestError, Intake};
use crate::pipeline::PushError;
use crate::proto::collector::ReportResponse;

/// gRPC path of `Report`.
pub const REPORT_PATH: &str = "/lightstep.collector.CollectorService/Report";

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// The `CollectorService` server.
#[derive(Clone)]
pub struct CollectorService {
    intake: Arc<Intake>,
    max_message_bytes: usize,
}

impl CollectorService {
    /// Serves `Report` into `intake`, accepting messages up to `max_message_bytes`.
    pub fn new(intake: Arc<Intake>, max_message_bytes: usize) -> Self {
        Self {
            intake,
            max_message_bytes,
        }
    }
}

impl NamedService for CollectorService {
    const NAME: &'static str = "lightstep.collector.CollectorService";
}

impl<B> tower::Service<http::Request<B>> for CollectorService
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != REPORT_PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = ReportMethod(self.intake.clone());
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawRequestCodec::<ReportResponse>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(max);
            let mut response = grpc.unary(method, request).await;
            too_large_is_resource_exhausted(&mut response);
            Ok(response)
        })
    }
}

/// tonic refuses an over-limit message with `OUT_OF_RANGE`; gRPC (and Lightstep clients)
/// expect `RESOURCE_EXHAUSTED`. Our handlers never send `OUT_OF_RANGE` themselves.
fn too_large_is_resource_exhausted(response: &mut http::Response<TonicBody>) {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(http::HeaderValue::as_bytes) == Some(b"11") {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from_static("8"), // RESOURCE_EXHAUSTED
        );
    }
}

struct ReportMethod(Arc<Intake>);

impl UnaryService<Bytes> for ReportMethod {
    type Response = ReportResponse;
    type Future = BoxFuture<Result<Response<ReportResponse>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let received = SystemTime::now();
        let result = {
            let header = auth::header_token_metadata(request.metadata());
            self.0.lightstep_report(request.get_ref().clone(), header)
        };
        Box::pin(async move {
            result.map_err(status_of)?;
            Ok(Response::new(report_response(received)))
        })
    }
}

/// An accepted report's answer: timestamps for the tracers' clock filter, no `errors` text.
pub fn report_response(received: SystemTime) -> ReportResponse {
    ReportResponse {
        receive_timestamp: Some(received.into()),
        transmit_timestamp: Some(SystemTime::now().into()),
        ..Default::default()
    }
}

fn status_of(error: IngestError) -> Status {
    match error {
        IngestError::Malformed(e) => {
            Status::invalid_argument(format!("malformed ReportRequest: {e}"))
        }
        IngestError::Unavailable(PushError::Closed) => {
            Status::unavailable("satellite is shutting down; retry")
        }
        IngestError::Unavailable(e @ PushError::Full { .. }) => {
            Status::unavailable(format!("satellite is overloaded ({e}); retry later"))
        }
    }
}

/// Decodes a request message as the raw `Bytes` tonic received (no copy, no decode) and
/// encodes a prost reply.
#[derive(Debug)]
struct RawRequestCodec<T>(PhantomData<fn(T)>);

impl<T> Default for RawRequestCodec<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Message + Send + 'static> Codec for RawRequestCodec<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self::default()
    }

    fn decoder(&mut self) -> Self {
        Self::default()
    }
}

impl<T: Message> Encoder for RawRequestCodec<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding reply: {e}")))
    }
}

impl<T> Decoder for RawRequestCodec<T> {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }
}
