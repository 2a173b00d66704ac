//! The counting upstream: a fast stand-in for the Lightstep ingest (or any OTLP collector) that
//! accepts `CollectorService/Report` and OTLP `TraceService/Export` over gRPC (h2c), and
//! `POST /v1/traces` and `/api/v2/reports` over HTTP/1.1, counts the spans with cubesat's wire
//! scanner and answers an empty success. It never decodes a span, so it costs about what a
//! receive costs, which makes "load -> sink" the limit the other paths are compared with.
//!
//! `GET /stats` on the same port answers the counts as JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::server::{Grpc, UnaryService};
use tonic::{Request, Response, Status};

use crate::body::{EXPORT_PATH, LIGHTSTEP_HTTP_PATH, OTLP_HTTP_PATH, REPORT_PATH};
use cubesat::codec::RawCodec;
use cubesat::proto::collector::ReportResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

/// Largest message the sink takes (cubesat's batches are 2 MiB by default).
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What the sink has received so far.
#[derive(Debug, Default)]
pub struct Counts {
    requests: AtomicU64,
    spans: AtomicU64,
    lightstep_spans: AtomicU64,
    otlp_spans: AtomicU64,
    bytes: AtomicU64,
    invalid: AtomicU64,
}

/// A snapshot of [`Counts`], as `/stats` serves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Requests accepted.
    pub requests: u64,
    /// Spans in them.
    pub spans: u64,
    /// Spans that came as Lightstep reports.
    pub lightstep_spans: u64,
    /// Spans that came as OTLP exports.
    pub otlp_spans: u64,
    /// Message bytes received (after gzip).
    pub bytes: u64,
    /// Requests refused because the scanner refused their bytes.
    pub invalid: u64,
}

impl Counts {
    /// The counts now.
    pub fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            requests: get(&self.requests),
            spans: get(&self.spans),
            lightstep_spans: get(&self.lightstep_spans),
            otlp_spans: get(&self.otlp_spans),
            bytes: get(&self.bytes),
            invalid: get(&self.invalid),
        }
    }

    /// Scans one message of `kind` and counts it; `Err` names what the scanner refused.
    fn count(&self, kind: Kind, body: &Bytes) -> Result<(), String> {
        let spans = match kind {
            Kind::Lightstep => cubesat::wire::report::scan_report(body, usize::MAX)
                .map(|scan| scan.spans.count)
                .map_err(|e| e.to_string()),
            Kind::Otlp => cubesat::wire::otlp::scan_export(body, usize::MAX)
                .map(|runs| runs.count)
                .map_err(|e| e.to_string()),
        };
        match spans {
            Ok(spans) => {
                let spans = u64::from(spans);
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.spans.fetch_add(spans, Ordering::Relaxed);
                self.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                match kind {
                    Kind::Lightstep => &self.lightstep_spans,
                    Kind::Otlp => &self.otlp_spans,
                }
                .fetch_add(spans, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.invalid.fetch_add(1, Ordering::Relaxed);
                Err(error)
            }
        }
    }
}

/// Which message a route carries.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Lightstep,
    Otlp,
}

/// A running sink.
pub struct Sink {
    /// The bound address.
    pub addr: SocketAddr,
    /// Its counts.
    pub counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Serves on an already-bound `listener` until dropped.
    pub fn serve(listener: TcpListener) -> std::io::Result<Sink> {
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let router = router(counts.clone());
        let task = tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http2()
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .max_frame_size(1 << 20)
                .max_concurrent_streams(1024);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let builder = builder.clone();
                tokio::spawn(async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Sink { addr, counts, task })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The sink's routes.
fn router(counts: Arc<Counts>) -> Router {
    Router::new()
        .route_service(
            REPORT_PATH,
            GrpcCount {
                counts: counts.clone(),
                kind: Kind::Lightstep,
            },
        )
        .route_service(
            EXPORT_PATH,
            GrpcCount {
                counts: counts.clone(),
                kind: Kind::Otlp,
            },
        )
        .route(OTLP_HTTP_PATH, post(otlp_http))
        .route(LIGHTSTEP_HTTP_PATH, post(lightstep_http))
        .route("/stats", get(stats))
        .with_state(counts)
}

async fn stats(State(counts): State<Arc<Counts>>) -> axum::Json<Stats> {
    axum::Json(counts.snapshot())
}

async fn otlp_http(
    State(counts): State<Arc<Counts>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    http_count(&counts, Kind::Otlp, &headers, body, || {
        ExportTraceServiceResponse::default().encode_to_vec()
    })
}

async fn lightstep_http(
    State(counts): State<Arc<Counts>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let received = SystemTime::now();
    http_count(&counts, Kind::Lightstep, &headers, body, || {
        ReportResponse {
            receive_timestamp: Some(received.into()),
            transmit_timestamp: Some(SystemTime::now().into()),
            ..Default::default()
        }
        .encode_to_vec()
    })
}

/// Counts an HTTP body (gunzipped when `Content-Encoding: gzip`) and answers 200 with `reply`.
fn http_count(
    counts: &Counts,
    kind: Kind,
    headers: &HeaderMap,
    body: Bytes,
    reply: impl FnOnce() -> Vec<u8>,
) -> axum::response::Response {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(&body[..]);
        match std::io::Read::read_to_end(&mut decoder, &mut out) {
            Ok(_) => Bytes::from(out),
            Err(error) => {
                return (StatusCode::BAD_REQUEST, format!("bad gzip body: {error}\n"))
                    .into_response();
            }
        }
    } else {
        body
    };
    match counts.count(kind, &body) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/x-protobuf")], reply()).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

/// A gRPC route that counts each message and answers an empty reply (zero bytes: the
/// encoding of an empty `ReportResponse` and of an empty `ExportTraceServiceResponse`).
#[derive(Clone)]
struct GrpcCount {
    counts: Arc<Counts>,
    kind: Kind,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl UnaryService<Bytes> for GrpcCount {
    type Response = Bytes;
    type Future = std::future::Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        std::future::ready(
            self.counts
                .count(self.kind, request.get_ref())
                .map(|()| Response::new(Bytes::new()))
                .map_err(Status::invalid_argument),
        )
    }
}

impl tower::Service<http::Request<axum::body::Body>> for GrpcCount {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec::<Bytes>::default())
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            Ok(grpc.unary(service, request).await)
        })
    }
}
