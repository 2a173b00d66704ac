//! gRPC ingest: one generic unary server that takes the request message as raw bytes (no
//! decode), hands it to the [`Intake`] and answers; each protocol supplies an [`IngestMethod`].
//! Lightstep's `CollectorService/Report` is in `lightstep/grpc.rs`, OTLP's `Export` in
//! `otlp/grpc.rs`.
//!
//! gzip requests are accepted, messages are limited to `max-message-bytes`, and handlers'
//! [`Refused`] values become gRPC statuses here.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body::Body;
use prost::Message;
use tonic::body::Body as TonicBody;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::intake::Intake;
use super::refused::Refused;
use crate::codec::RawCodec;
use crate::pipeline::Protocol;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// One unary ingest method: its names, and what it does with a raw request.
pub trait IngestMethod: Send + Sync + 'static {
    /// The protocol: its service name and method path.
    const PROTOCOL: Protocol;
    /// The reply message.
    type Reply: Message;

    /// Hands `body` to `intake`; `received` is the arrival time.
    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        received: SystemTime,
    ) -> Result<Self::Reply, Refused>;
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
    const NAME: &'static str = M::PROTOCOL.service();
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
        if request.uri().path() != M::PROTOCOL.grpc_path() {
            let status = Status::unimplemented(format!("no method {}", request.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let method = Unary::<M>(self.intake.clone(), PhantomData);
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec::<Bytes>::default())
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
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let received = SystemTime::now();
        let result = M::handle(
            &self.0,
            request.get_ref().clone(),
            request.metadata(),
            received,
        );
        let result = result
            .map(|reply| Response::new(Bytes::from(reply.encode_to_vec())))
            .map_err(Refused::into_status);
        Box::pin(async move { result })
    }
}
