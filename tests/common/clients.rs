//! Other clients: plain HTTP posts, the C++ streaming head, and the Python tracers run as
//! child processes.

use super::*;

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
