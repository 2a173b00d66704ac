//! The capturing upstream: a gRPC server that records every request's raw bytes and
//! metadata, under both the Lightstep and the OTLP service names.

use super::*;

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
    /// Hold each request unanswered (and unrecorded) until the answer changes.
    Hang,
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

    /// Waits until the Lightstep spans of `trace` received are exactly `ids` (other clients'
    /// spans may arrive too), failing after `within`.
    pub async fn wait_for_trace(&self, trace: u64, ids: std::ops::Range<u64>, within: Duration) {
        let want: std::collections::BTreeSet<u64> = ids.collect();
        let deadline = Instant::now() + within;
        loop {
            let got: std::collections::BTreeSet<u64> = self
                .spans()
                .iter()
                .filter_map(|(s, _)| s.span_context.as_ref())
                .filter(|c| c.trace_id == trace)
                .map(|c| c.span_id)
                .collect();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "spans of trace {trace} arrived: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
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
    const NAME: &'static str = Protocol::Lightstep.service();
}

/// The same capture, mounted under OTLP's service name.
#[derive(Clone)]
struct CaptureOtlp(CaptureService);

impl NamedService for CaptureOtlp {
    const NAME: &'static str = Protocol::Otlp.service();
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
            // Both success replies are empty messages: the empty message, encoded.
            let method = CaptureReport(capture, authority, path);
            let mut grpc =
                Grpc::new(RawCodec::<Bytes>::default()).max_decoding_message_size(64 << 20);
            Ok(grpc.unary(method, req).await)
        })
    }
}

struct CaptureReport(Capture, String, String);

impl UnaryService<Bytes> for CaptureReport {
    type Response = Bytes;
    type Future = BoxFuture<Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let answer = *self.0.answer.lock().unwrap();
        if let Answer::Fail(code) = answer {
            return Box::pin(async move { Err(Status::new(code, "capture told to fail")) });
        }
        if answer == Answer::Hang {
            let mut this = CaptureReport(self.0.clone(), self.1.clone(), self.2.clone());
            return Box::pin(async move {
                while *this.0.answer.lock().unwrap() == Answer::Hang {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                this.call(req).await
            });
        }
        let token_header = req
            .metadata()
            .get(TOKEN_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        self.0.received.lock().unwrap().push(Captured {
            path: self.2.clone(),
            token_header,
            authority: self.1.clone(),
            raw: req.into_inner(),
        });
        Box::pin(async { Ok(Response::new(Bytes::new())) })
    }
}

/// A capturing upstream and `cubesat` forwarding to it, as the end-to-end tests start them: a
/// builder over what differs between tests (token, batch timeout, extra flags, upstream TLS,
/// how the capture answers, whether to wait for readiness, serve or dev mode).
pub struct ServeToCapture<'a> {
    mode: &'static str,
    token: Option<&'a str>,
    batch_timeout: &'a str,
    args: Vec<&'a str>,
    upstream_tls: Option<&'a TlsIngest>,
    answer: Answer,
    wait_ready: bool,
}

impl Default for ServeToCapture<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> ServeToCapture<'a> {
    /// `cubesat serve`, no token configured, batches closing after 100 ms, plaintext h2c
    /// upstream answering OK; `start` returns once `/_ready` answers 200.
    pub fn new() -> Self {
        ServeToCapture {
            mode: "serve",
            token: None,
            batch_timeout: "100ms",
            args: Vec::new(),
            upstream_tls: None,
            answer: Answer::Ok,
            wait_ready: true,
        }
    }

    /// `cubesat dev` (developer mode) instead of `serve`.
    pub fn dev(mut self) -> Self {
        self.mode = "dev";
        self
    }

    /// `--access-token token`.
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    /// `--batch-timeout` (clap takes the flag once, so it is set here, not in `args`).
    pub fn batch_timeout(mut self, timeout: &'a str) -> Self {
        self.batch_timeout = timeout;
        self
    }

    /// More flags for cubesat.
    pub fn args(mut self, args: &[&'a str]) -> Self {
        self.args.extend_from_slice(args);
        self
    }

    /// The capture serves TLS with `certs`' server identity; cubesat reaches it as
    /// `https://localhost:PORT` trusting `certs.ca` (`--upstream-ca`).
    pub fn upstream_tls(mut self, certs: &'a TlsIngest) -> Self {
        self.upstream_tls = Some(certs);
        self
    }

    /// How the capture answers from the start.
    pub fn answer(mut self, answer: Answer) -> Self {
        self.answer = answer;
        self
    }

    /// Returns as soon as cubesat has printed its start lines, without waiting for `/_ready`.
    pub fn no_ready_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Starts the capture, then cubesat forwarding to it.
    pub async fn start(self) -> (Capture, CaptureServer, Cubesat) {
        let capture = Capture::default();
        *capture.answer.lock().unwrap() = self.answer;
        let upstream = capture
            .serve("127.0.0.1:0", self.upstream_tls.map(TlsIngest::identity))
            .await;
        let url = match self.upstream_tls {
            Some(_) => format!("https://localhost:{}", upstream.addr.port()),
            None => format!("http://{}", upstream.addr),
        };
        let mut args = vec!["--upstream", &url];
        if let Some(certs) = self.upstream_tls {
            args.extend(["--upstream-ca", certs.ca_str()]);
        }
        if let Some(token) = self.token {
            args.extend(["--access-token", token]);
        }
        args.extend(["--batch-timeout", self.batch_timeout]);
        args.extend_from_slice(&self.args);
        let cubesat = Cubesat::run(self.mode, &args);
        if self.wait_ready {
            cubesat.wait_ready(200, Duration::from_secs(10)).await;
        }
        (capture, upstream, cubesat)
    }
}

/// A capturing upstream and `cubesat serve` forwarding to it over h2c with `token` configured,
/// batches closing after 100 ms, plus `extra` flags; returns once cubesat is ready. The common
/// case of [`ServeToCapture`].
pub async fn serve_to_capture(token: &str, extra: &[&str]) -> (Capture, CaptureServer, Cubesat) {
    ServeToCapture::new().token(token).args(extra).start().await
}
