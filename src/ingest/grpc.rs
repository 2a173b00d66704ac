//! gRPC ingest: one generic unary server that takes the request message as raw bytes (no
//! decode), hands it to the [`Intake`] and answers; each protocol supplies an [`IngestMethod`].
//! Lightstep's `CollectorService/Report` is defined here, OTLP's `Export` in `otlp.rs`.
//!
//! gzip requests are accepted, messages are limited to `max-message-bytes`, and this file is
//! the one place where ingest errors become gRPC statuses.

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
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::auth;
use super::intake::{IngestError, Intake};
use crate::pipeline::PushError;
use crate::proto::collector::ReportResponse;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// One unary ingest method: its names, and what it does with a raw request.
pub trait IngestMethod: Send + Sync + 'static {
    /// Fully-qualified service name.
    const SERVICE: &'static str;
    /// The method's path, `/<service>/<method>`.
    const PATH: &'static str;
    /// The reply message.
    type Reply: Message + Default + Send + 'static;

    /// Hands `body` to `intake`; `received` is the arrival time.
    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        received: SystemTime,
    ) -> Result<Self::Reply, IngestError>;
}

/// `lightstep.collector.CollectorService/Report`.
pub struct Report;

impl IngestMethod for Report {
    const SERVICE: &'static str = "lightstep.collector.CollectorService";
    const PATH: &'static str = "/lightstep.collector.CollectorService/Report";
    type Reply = ReportResponse;

    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        received: SystemTime,
    ) -> Result<ReportResponse, IngestError> {
        intake.lightstep_report(body, auth::header_token_metadata(metadata))?;
        Ok(report_response(received))
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

/// The gRPC server of one [`IngestMethod`].
pub struct GrpcIngest<M> {
    intake: Arc<Intake>,
    max_message_bytes: usize,
    method: PhantomData<fn() -> M>,
}

impl<M> Clone for GrpcIngest<M> {
    fn clone(&self) -> Self {
        Self {
            intake: self.intake.clone(),
            max_message_bytes: self.max_message_bytes,
            method: PhantomData,
        }
    }
}

impl<M: IngestMethod> GrpcIngest<M> {
    /// Serves `M` into `intake`, accepting messages up to `max_message_bytes`.
    pub fn new(intake: Arc<Intake>, max_message_bytes: usize) -> Self {
        Self {
            intake,
            max_message_bytes,
            method: PhantomData,
        }
    }
}

impl<M: IngestMethod> NamedService for GrpcIngest<M> {
    const NAME: &'static str = M::SERVICE;
}

impl<M, B> tower::Service<http::Request<B>> for GrpcIngest<M>
where
    M: IngestMethod,
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
        if request.uri().path() != M::PATH {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = Unary::<M>(self.intake.clone(), PhantomData);
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawRequestCodec::<M::Reply>::default())
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
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
}

struct Unary<M>(Arc<Intake>, PhantomData<fn() -> M>);

impl<M: IngestMethod> UnaryService<Bytes> for Unary<M> {
    type Response = M::Reply;
    type Future = BoxFuture<Result<Response<M::Reply>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let received = SystemTime::now();
        let result = M::handle(
            &self.0,
            request.get_ref().clone(),
            request.metadata(),
            received,
        );
        Box::pin(async move { result.map(Response::new).map_err(status_of) })
    }
}

fn status_of(error: IngestError) -> Status {
    match error {
        IngestError::Malformed(_)
        | IngestError::MalformedOtlp(_)
        | IngestError::Untranslatable(_) => Status::invalid_argument(error.to_string()),
        IngestError::Unavailable(PushError::Closed) => {
            Status::unavailable("satellite is shutting down; retry")
        }
        IngestError::Unavailable(e @ PushError::Full { .. }) => {
            Status::unavailable(format!("satellite is overloaded ({e}); retry later"))
        }
        // A token is a credential: clients (and Lightstep's own collectors) treat a bad one
        // as UNAUTHENTICATED, and neither gRPC nor OTel clients retry it.
        IngestError::Token(_) => Status::unauthenticated(error.to_string()),
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
