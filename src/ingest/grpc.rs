//! gRPC ingest: one generic unary server that takes the request message as raw bytes (no
//! decode), hands it to the [`Intake`] and answers; each protocol supplies an [`IngestMethod`].
//! Lightstep's `CollectorService/Report` is in `lightstep/grpc.rs`, OTLP's `Export` in
//! `otlp/grpc.rs`.
//!
//! The message is read by [`message::read_message`], not tonic's codec: its length prefix is
//! checked against `max-message-bytes` and the budget before a byte of it is buffered, and
//! gzip is inflated in charged steps. Handlers' [`Refused`] values become gRPC statuses here.

mod message;

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tonic::Status;
use tonic::body::Body as TonicBody;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use super::intake::{Intake, RefusalReason};
use super::refused::Refused;
use crate::pipeline::{Charge, Protocol};
use message::MessageError;

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// One unary ingest method: its names, and what it does with a raw request.
pub trait IngestMethod: Send + Sync + 'static {
    /// The protocol: its service name and method path.
    const PROTOCOL: Protocol;
    /// The reply message.
    type Reply: Message;

    /// Hands `body` to `intake`; `received` is the arrival time, `charge` the in-flight
    /// charge that paid for reading it (see [`Intake::lightstep_report`]).
    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        received: SystemTime,
        charge: Charge,
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
        let intake = self.intake.clone();
        let max = self.max_message_bytes;
        Box::pin(async move {
            let received = SystemTime::now();
            let (parts, body) = request.into_parts();
            let budget = intake.ring().budget().clone();
            let result = match message::read_message(
                body,
                &parts.headers,
                max,
                &budget,
                intake.ring().arena(),
            )
            .await
            {
                Ok((body, charge)) => {
                    let metadata = MetadataMap::from_headers(parts.headers);
                    M::handle(&intake, body, &metadata, received, charge)
                }
                Err(error) => Err(refused(&intake, M::PROTOCOL, error)),
            };
            Ok(match result {
                Ok(reply) => ok_response(&reply),
                Err(refused) => refused.into_status().into_http(),
            })
        })
    }
}

/// Counts a message refused for its size or for room, and describes it.
fn refused(intake: &Intake, protocol: Protocol, error: MessageError) -> Refused {
    let reason = match error {
        MessageError::TooLarge { .. } => Some(RefusalReason::TooLarge),
        MessageError::Budget(_) => Some(RefusalReason::Budget),
        _ => None,
    };
    tracing::debug!(%error, "refused gRPC request message");
    if let Some(reason) = reason {
        intake.count_refused(protocol, reason);
    }
    error.into()
}

/// A unary success: the reply framed (uncompressed), then `grpc-status: 0` in trailers.
fn ok_response(reply: &impl Message) -> http::Response<TonicBody> {
    let len = reply.encoded_len();
    let mut framed = BytesMut::with_capacity(5 + len);
    framed.put_u8(0);
    framed.put_u32(len as u32);
    // Encoding into a buffer with room for the message cannot fail.
    let _ = reply.encode(&mut framed);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let body = Full::new(framed.freeze()).with_trailers(async move { Some(Ok(trailers)) });
    let mut response = http::Response::new(TonicBody::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}
