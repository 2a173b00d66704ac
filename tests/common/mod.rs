//! Shared harness for the end-to-end tests: the real `cubesat` binary as a child process, a
//! capturing upstream that records every request's raw bytes and metadata, and clients that
//! send the way Envoy's Lightstep tracer does. Everything binds 127.0.0.1.

#![allow(dead_code)] // Each test binary uses a different part of the harness.

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use cubesat::proto::collector as pb;
use prost::Message;
use thrift::protocol::{
    TBinaryOutputProtocol, TFieldIdentifier, TListIdentifier, TMessageIdentifier, TMessageType,
    TOutputProtocol, TStructIdentifier, TType,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

pub const REPORT_PATH: &str = "/lightstep.collector.CollectorService/Report";
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;

// ---------------------------------------------------------------------------------------------
// The cubesat process.

/// A running `cubesat`, killed on drop; its stderr is printed if the test fails.
pub struct Cubesat {
    child: Child,
    pub ingest: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cubesat {
    /// Starts `cubesat serve` on port 0 with `args` added.
    pub fn serve(args: &[&str]) -> Cubesat {
        let mut all = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        Self::start(&all)
    }

    /// Starts the binary with exactly `args`, waiting for its start lines.
    pub fn start(args: &[&str]) -> Cubesat {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_cubesat"))
            .args(args)
            .env("RUST_LOG", "info,cubesat=debug")
            .env_remove("LIGHTSTEP_ACCESS_TOKEN")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start cubesat");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut ingest, mut tls, mut admin) = (None, None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while admin.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "no start lines; stderr:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )
                });
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                &parts[..2],
                ["cubesat", "listening:"],
                "start line format: {line}"
            );
            let addr: SocketAddr = parts[4].parse().unwrap();
            assert_ne!(addr.port(), 0, "start line shows the real port: {line}");
            match parts[2] {
                "ingest" => ingest = Some(addr),
                "tls" => tls = Some(addr),
                "admin" => admin = Some(addr),
                "ui" => {}
                other => panic!("unexpected role {other}"),
            }
        }
        Cubesat {
            child,
            ingest: ingest.unwrap(),
            tls,
            admin: admin.unwrap(),
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "cubesat did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin, path).await
    }

    /// Waits until `/_ready` answers `want`.
    pub async fn wait_ready(&self, want: u16, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.admin_get("/_ready").await;
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/_ready stayed {status} ({body}), wanted {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a metric line (name with labels exactly as rendered), or 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics").await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for Cubesat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- cubesat stderr ----\n{}", self.stderr());
        }
    }
}

/// A minimal HTTP/1.1 GET.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let response = client.get(uri).await.expect("admin GET");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------------
// The capturing upstream.

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The gRPC path: Report or Export.
    pub path: String,
    pub token_header: Option<String>,
    pub authority: String,
    pub raw: Bytes,
}

impl Captured {
    pub fn decode(&self) -> pb::ReportRequest {
        assert_eq!(self.path, REPORT_PATH);
        pb::ReportRequest::decode(self.raw.clone()).expect("upstream got a valid ReportRequest")
    }

    pub fn decode_otlp(&self) -> ExportTraceServiceRequest {
        assert_eq!(self.path, EXPORT_PATH);
        ExportTraceServiceRequest::decode(self.raw.clone()).expect("upstream got a valid export")
    }
}

/// How the capture answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Fail(tonic::Code),
}

/// A CollectorService upstream that records raw requests.
#[derive(Clone)]
pub struct Capture {
    pub received: Arc<Mutex<Vec<Captured>>>,
    pub answer: Arc<Mutex<Answer>>,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            received: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Ok)),
        }
    }
}

/// A running capture server; stops on `stop()` or drop.
pub struct CaptureServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl CaptureServer {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Capture {
    /// Serves on `addr` (port 0 for any), plaintext h2c or TLS with the given PEM identity.
    pub async fn serve(&self, addr: &str, tls: Option<(&Path, &Path)>) -> CaptureServer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let mut server = Server::builder();
        if let Some((cert, key)) = tls {
            let identity = tonic::transport::Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            );
            server = server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        let router = server
            .add_service(CaptureService(self.clone()))
            .add_service(CaptureOtlp(CaptureService(self.clone())));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        CaptureServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.received.lock().unwrap().clone()
    }

    /// Every OTLP span received, with its resource and the request it came in.
    pub fn otlp_spans(&self) -> Vec<(OtlpSpan, Resource, Captured)> {
        let mut out = Vec::new();
        for c in self
            .requests()
            .into_iter()
            .filter(|c| c.path == EXPORT_PATH)
        {
            for rs in c.decode_otlp().resource_spans {
                let resource = rs.resource.unwrap_or_default();
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    out.push((span, resource.clone(), c.clone()));
                }
            }
        }
        out
    }

    /// Waits until at least `n` OTLP spans have arrived.
    pub async fn wait_otlp_spans(
        &self,
        n: usize,
        within: Duration,
    ) -> Vec<(OtlpSpan, Resource, Captured)> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.otlp_spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "upstream got {} OTLP spans, wanted {n}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every Lightstep span received, in arrival order, with the request it came in.
    pub fn spans(&self) -> Vec<(pb::Span, Captured)> {
        self.requests()
            .into_iter()
            .filter(|c| c.path == REPORT_PATH)
            .flat_map(|c| {
                let req = c.decode();
                req.spans.into_iter().map(move |s| (s, c.clone()))
            })
            .collect()
    }

    /// Waits until at least `n` spans have arrived.
    pub async fn wait_spans(&self, n: usize, within: Duration) -> Vec<(pb::Span, Captured)> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "upstream got {} spans, wanted {n}",
                spans.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[derive(Clone)]
struct CaptureService(Capture);

impl NamedService for CaptureService {
    const NAME: &'static str = "lightstep.collector.CollectorService";
}

/// The same capture, mounted under OTLP's service name.
#[derive(Clone)]
struct CaptureOtlp(CaptureService);

impl NamedService for CaptureOtlp {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tower::Service<http::Request<tonic::body::Body>> for CaptureOtlp {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.call(req)
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl tower::Service<http::Request<tonic::body::Body>> for CaptureService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let capture = self.0.clone();
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let path = req.uri().path().to_owned();
        Box::pin(async move {
            if path == EXPORT_PATH {
                let method = CaptureReport::<ExportTraceServiceResponse>(
                    capture,
                    authority,
                    path,
                    std::marker::PhantomData,
                );
                let mut grpc = Grpc::new(RawCodec::<ExportTraceServiceResponse>::default())
                    .max_decoding_message_size(64 << 20);
                Ok(grpc.unary(method, req).await)
            } else {
                let method = CaptureReport::<pb::ReportResponse>(
                    capture,
                    authority,
                    path,
                    std::marker::PhantomData,
                );
                let mut grpc = Grpc::new(RawCodec::<pb::ReportResponse>::default())
                    .max_decoding_message_size(64 << 20);
                Ok(grpc.unary(method, req).await)
            }
        })
    }
}

struct CaptureReport<R>(Capture, String, String, std::marker::PhantomData<fn() -> R>);

impl<R: Message + Default + Send + 'static> UnaryService<Bytes> for CaptureReport<R> {
    type Response = R;
    type Future = BoxFuture<Result<Response<R>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let answer = *self.0.answer.lock().unwrap();
        if let Answer::Fail(code) = answer {
            return Box::pin(async move { Err(Status::new(code, "capture told to fail")) });
        }
        let token_header = req
            .metadata()
            .get("lightstep-access-token")
            .map(|v| v.to_str().unwrap().to_owned());
        self.0.received.lock().unwrap().push(Captured {
            path: self.2.clone(),
            token_header,
            authority: self.1.clone(),
            raw: req.into_inner(),
        });
        Box::pin(async { Ok(Response::new(R::default())) })
    }
}

/// Raw bytes in (`Bytes`), a prost message out; used by the capture server and raw clients.
pub struct RawCodec<T>(std::marker::PhantomData<fn(T)>);

impl<T> Default for RawCodec<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: Message + Default + Send + 'static> Codec for RawCodec<T> {
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

impl<T: Message> Encoder for RawCodec<T> {
    type Item = T;
    type Error = Status;
    fn encode(&mut self, item: T, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl<T> Decoder for RawCodec<T> {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Sends raw bytes as the request message; decodes the reply as a `ReportResponse`.
#[derive(Default, Clone, Copy)]
pub struct SendRaw;

impl Codec for SendRaw {
    type Encode = Bytes;
    type Decode = pb::ReportResponse;
    type Encoder = Self;
    type Decoder = Self;
    fn encoder(&mut self) -> Self {
        SendRaw
    }
    fn decoder(&mut self) -> Self {
        SendRaw
    }
}

impl Encoder for SendRaw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for SendRaw {
    type Item = pb::ReportResponse;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::ReportResponse>, Status> {
        pb::ReportResponse::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy-like clients.

/// A channel the way Envoy's Lightstep tracer opens it: HTTP/2, `:authority` = cluster name.
pub async fn envoy_channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .origin("http://lightstep".parse().unwrap())
        .connect()
        .await
        .expect("connect to cubesat")
}

/// A TLS channel trusting `ca` (PEM), with `localhost` as the server name.
pub async fn tls_channel(addr: SocketAddr, ca: &Path) -> Channel {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(ca).unwrap(),
        ))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("TLS connect to cubesat")
}

/// Posts raw `body` to `Report` (optionally gzip), with `grpc-timeout` and no token header,
/// as Envoy does.
pub async fn send_raw(
    channel: &Channel,
    body: Bytes,
    gzip: bool,
) -> Result<pb::ReportResponse, Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(64 << 20);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = Request::new(body);
    req.set_timeout(Duration::from_secs(5));
    grpc.unary(
        req,
        http::uri::PathAndQuery::from_static(REPORT_PATH),
        SendRaw,
    )
    .await
    .map(Response::into_inner)
}

/// An Envoy-like reporter for `cluster` (node.cluster becomes the component name).
pub fn envoy_reporter(cluster: &str, reporter_id: u64) -> pb::Reporter {
    let tag = |k: &str, v: &str| pb::KeyValue {
        key: k.into(),
        value: Some(pb::key_value::Value::StringValue(v.into())),
    };
    pb::Reporter {
        reporter_id,
        tags: vec![
            tag("lightstep.component_name", cluster),
            tag("lightstep.tracer_platform", "envoy"),
            tag("lightstep.tracer_platform_version", "1.23.0"),
            tag("lightstep.tracer_version", "0.19"),
            tag("lightstep.hostname", "productpage-v1-6b746f74dc-9stvs"),
        ],
    }
}

/// The encoded `0x1A` field of one Envoy-like span, with its fields out of numeric order
/// (span_context last, as the C++ tracer writes them) so byte equality means "untouched".
pub fn envoy_span_field(trace_id: u64, span_id: u64, parent: u64) -> Vec<u8> {
    let tag = |k: &str, v: &str| pb::KeyValue {
        key: k.into(),
        value: Some(pb::key_value::Value::StringValue(v.into())),
    };
    let body = pb::Span {
        operation_name: "productpage.default.svc.cluster.local:9080/*".into(),
        start_timestamp: Some(SystemTime::now().into()),
        duration_micros: 1234 + span_id % 100,
        tags: vec![
            tag("guid:x-request-id", &format!("{span_id:x}-req")),
            tag(
                "node_id",
                "sidecar~10.1.1.7~productpage-v1.default~default.svc.cluster.local",
            ),
            tag("http.url", "http://productpage:9080/productpage"),
            tag("http.method", "GET"),
            tag("http.status_code", "200"),
            tag("component", "proxy"),
            tag("span.kind", "server"),
        ],
        references: vec![pb::Reference {
            relationship: 0,
            span_context: Some(pb::SpanContext {
                trace_id,
                span_id: parent,
                baggage: Default::default(),
            }),
        }],
        ..Default::default()
    }
    .encode_to_vec();
    let context = pb::Span {
        span_context: Some(pb::SpanContext {
            trace_id,
            span_id,
            baggage: Default::default(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let mut span = body;
    span.extend_from_slice(&context);
    let mut field = vec![0x1a];
    prost::encoding::encode_varint(span.len() as u64, &mut field);
    field.extend_from_slice(&span);
    field
}

/// An Envoy-like `ReportRequest` (token only in the body) and the encoded span fields in it.
pub fn envoy_report(
    reporter: &pb::Reporter,
    token: &str,
    trace_id: u64,
    span_ids: std::ops::Range<u64>,
) -> (Bytes, Vec<Vec<u8>>) {
    let mut buf = pb::ReportRequest {
        reporter: Some(reporter.clone()),
        auth: Some(pb::Auth {
            access_token: token.into(),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let spans: Vec<Vec<u8>> = span_ids
        .map(|id| envoy_span_field(trace_id, id, id.saturating_sub(1)))
        .collect();
    for span in &spans {
        buf.extend_from_slice(span);
    }
    (Bytes::from(buf), spans)
}

/// Where `needle` occurs in `haystack`, counting every occurrence.
pub fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Development certificates from `cubesat certs`, kept while this lives, and the flags that
/// serve TLS ingest with them.
pub struct TlsIngest {
    _dir: tempfile::TempDir,
    /// The CA file a client trusts.
    pub ca: PathBuf,
    cert: String,
    key: String,
}

impl TlsIngest {
    /// Makes the certificates.
    pub fn new() -> Self {
        let (dir, ca, cert, key) = dev_certs();
        let path = |p: PathBuf| p.to_str().expect("UTF-8 temp path").to_owned();
        Self {
            _dir: dir,
            ca,
            cert: path(cert),
            key: path(key),
        }
    }

    /// `--tls-listen 127.0.0.1:0` with the server certificate and key.
    pub fn args(&self) -> [&str; 6] {
        [
            "--tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            &self.cert,
            "--tls-key",
            &self.key,
        ]
    }
}

/// Runs `cubesat certs` into a fresh directory: (dir, cacert, server cert, server key).
pub fn dev_certs() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["certs", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "cubesat certs failed");
    let p = dir.path().to_owned();
    (
        dir,
        p.join("cacert.pem"),
        p.join("server.pem"),
        p.join("server-key.pem"),
    )
}

/// An HTTP/1.1 POST: (status, body as text).
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    content_encoding: Option<&str>,
) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request =
        http::Request::post(format!("http://{addr}{path}")).header("content-type", content_type);
    if let Some(encoding) = content_encoding {
        request = request.header("content-encoding", encoding);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A capturing upstream and `cubesat serve` forwarding to it over h2c with `token` configured,
/// batches closing after 100 ms, plus `extra` flags; returns once cubesat is ready.
pub async fn serve_to_capture(token: &str, extra: &[&str]) -> (Capture, CaptureServer, Cubesat) {
    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let url = format!("http://{}", upstream.addr);
    let mut args = vec![
        "--upstream",
        &url,
        "--access-token",
        token,
        "--batch-timeout",
        "100ms",
    ];
    args.extend_from_slice(extra);
    let cubesat = Cubesat::serve(&args);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    (capture, upstream, cubesat)
}

/// A client's Python interpreter: `var` if set (else `python3`), checked to import `modules`;
/// the test fails naming `var` when it cannot.
pub fn tool_python(var: &str, modules: &str, what: &str) -> String {
    let python = std::env::var(var).unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        probe.is_ok_and(|s| s.success()),
        "no Python with {what} ({python}); set {var} or run the suite with scripts/test"
    );
    python
}

/// Runs a client script that prints what it sent as a JSON array; fails the test with the
/// client's output when it fails.
pub async fn run_json_client(cmd: Command) -> Vec<serde_json::Value> {
    match run_client(cmd).await {
        serde_json::Value::Array(sent) => sent,
        other => panic!("client printed {other}, not a JSON array"),
    }
}

/// Runs a client script that prints one JSON value; fails the test with the client's output
/// when it fails or prints anything else.
pub async fn run_client(mut cmd: Command) -> serde_json::Value {
    let client = format!(
        "{:?} {:?}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>()
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("client runs"))
        .await
        .expect("client task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client {client} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client {client} printed no JSON ({e}): {stdout}"))
}

/// The request head exactly as the C++ streaming recorder writes it: no space after colons, a
/// Host right-justified with spaces to the longest endpoint name, no Content-Length, no token.
pub const CPP_STREAM_HEAD: &[u8] = b"POST /api/v2/reports HTTP/1.1\r\nHost:      localhost\r\nConnection:close\r\nContent-Type:application/octet-stream\r\nTransfer-Encoding:chunked\r\n\r\n";

/// One HTTP/1.1 chunk of `payload`; `padded` writes the size as the C++ recorder does (eight
/// lower-case hex digits), otherwise in the shortest upper-case form.
pub fn http_chunk(payload: &[u8], padded: bool) -> Vec<u8> {
    let mut out = if padded {
        format!("{:08x}\r\n", payload.len())
    } else {
        format!("{:X}\r\n", payload.len())
    }
    .into_bytes();
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
    out
}

/// The OpenTelemetry Python SDK with the OTLP gRPC and HTTP exporters.
pub fn otel_python() -> String {
    tool_python(
        "CUBESAT_OTEL_PYTHON",
        "opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        "the OpenTelemetry SDK and OTLP exporters",
    )
}

/// The PyPI `lightstep==4.4.8` tracer (with its Thrift dependency).
pub fn lightstep_python() -> String {
    tool_python(
        "CUBESAT_LIGHTSTEP_PYTHON",
        "lightstep, thrift",
        "lightstep==4.4.8",
    )
}

/// The PyPI `lightstep-streaming==0.14.0` C++ stream recorder.
pub fn streaming_python() -> String {
    tool_python(
        "CUBESAT_STREAMING_PYTHON",
        "lightstep_streaming",
        "lightstep-streaming==0.14.0",
    )
}

// ---------------------------------------------------------------------------------------------
// Thrift fixtures (the legacy transports' tests and the fuzz seeds).

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A Thrift JSON report as a JS/Ruby tracer writes it, with `null`s and non-string values.
pub fn thrift_json(start: i64, span_guid: &str, name: &str) -> String {
    serde_json::json!({
        "runtime": {
            "guid": "5eed",
            "start_micros": start - 5_000_000,
            "group_name": "billing",
            "attrs": [
                {"Key": "lightstep.tracer_platform", "Value": "ruby"},
                {"Key": "pid", "Value": 4242},
                {"Key": "debug", "Value": null}
            ]
        },
        "oldest_micros": null,
        "youngest_micros": null,
        "span_records": [{
            "span_guid": span_guid,
            "trace_guid": "00000000000000000000000000000abc",
            "runtime_guid": "5eed",
            "span_name": name,
            "join_ids": null,
            "oldest_micros": start,
            "youngest_micros": start + 2_500,
            "error_flag": true,
            "attributes": [
                {"Key": "parent_span_guid", "Value": "beef"},
                {"Key": "retries", "Value": 2},
                {"Key": "ratio", "Value": 0.25},
                {"Key": "cached", "Value": false},
                {"Key": "note", "Value": null}
            ],
            "log_records": [{
                "timestamp_micros": start + 100,
                "runtime_guid": null,
                "stable_name": "charged",
                "payload_json": "{\"amount\":12}",
                "fields": null
            }]
        }],
        "log_records": null,
        "counters": null,
        "internal_logs": null,
        "internal_metrics": {"counts": [{"name": "spans.dropped", "int64_value": 3, "double_value": null}]},
        "timestamp_offset_micros": 12
    })
    .to_string()
}

/// A TBinaryProtocol `Report` call with one span, built with the thrift crate.
pub fn binary_call(seqid: i32, token: &str, span_guid: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut p = TBinaryOutputProtocol::new(&mut out, true);
    let field = |p: &mut TBinaryOutputProtocol<&mut Vec<u8>>, ty, id| {
        p.write_field_begin(&TFieldIdentifier::new("f", ty, id))
            .unwrap()
    };
    p.write_message_begin(&TMessageIdentifier::new(
        "Report",
        TMessageType::Call,
        seqid,
    ))
    .unwrap();
    p.write_struct_begin(&TStructIdentifier::new("args"))
        .unwrap();
    field(&mut p, TType::Struct, 1);
    field(&mut p, TType::String, 1);
    p.write_string(token).unwrap();
    p.write_field_stop().unwrap();
    field(&mut p, TType::Struct, 2);
    field(&mut p, TType::Struct, 1);
    field(&mut p, TType::String, 3);
    p.write_string("binary-client").unwrap();
    p.write_field_stop().unwrap();
    field(&mut p, TType::List, 3);
    p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
        .unwrap();
    field(&mut p, TType::String, 1);
    p.write_string(span_guid).unwrap();
    field(&mut p, TType::String, 11);
    p.write_string("77").unwrap();
    field(&mut p, TType::String, 3);
    p.write_string("binary op").unwrap();
    field(&mut p, TType::I64, 5);
    p.write_i64(now_micros()).unwrap();
    field(&mut p, TType::List, 8);
    p.write_list_begin(&TListIdentifier::new(TType::Struct, 1))
        .unwrap();
    field(&mut p, TType::String, 1);
    p.write_string("raw").unwrap();
    field(&mut p, TType::String, 2);
    p.write_bytes(value).unwrap();
    p.write_field_stop().unwrap();
    p.write_field_stop().unwrap(); // span
    p.write_field_stop().unwrap(); // request
    p.write_field_stop().unwrap(); // args
    p.write_message_end().unwrap();
    out
}
