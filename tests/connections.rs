//! Connection hygiene, shutdown accounting and ingress security, end to end against the real
//! binary on 127.0.0.1: idle and slow clients are closed within their (lowered) timeouts and
//! the process's descriptors come back; an admin flood does not stop ingest; SIGTERM reports
//! what it delivered and dropped and says so in the exit status; bad token bytes are refused;
//! a foreign origin is never echoed in serve mode; `--max-connection-age` rotates a real
//! client's connection without losing a span; SIGHUP re-reads the token file and swaps the TLS
//! certificate without dropping a connection.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use cubesat::proto::collector as pb;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Open file descriptors of `pid`.
fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until `pid` has at most `max` descriptors open; returns the last count.
async fn wait_fds_at_most(pid: i32, max: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let n = open_fds(pid);
        if n <= max || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects, writes `first` at once, then `drip` one byte every `every`, and returns how
/// long the server took to close the connection (or `None` if it did not within 15 s).
async fn time_to_close(
    addr: SocketAddr,
    first: Vec<u8>,
    drip: Vec<u8>,
    every: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(&first).await.ok()?;
    let mut drip = drip.into_iter();
    let mut buf = [0u8; 4096];
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let deadline = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // a response, a SETTINGS frame or a GOAWAY: keep waiting for the close
            },
            _ = tick.tick() => {
                if let Some(byte) = drip.next()
                    && stream.write_all(&[byte]).await.is_err()
                {
                    return Some(started.elapsed());
                }
            }
            _ = &mut deadline => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_within_their_timeouts_and_descriptors_come_back() {
    let cubesat = Cubesat::serve(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--protocol-detect-timeout",
        "1s",
        "--header-read-timeout",
        "1s",
        "--http1-idle-timeout",
        "2s",
        "--http2-idle-timeout",
        "1s",
        "--body-min-rate",
        "1KiB",
        "--body-min-rate-grace",
        "1s",
    ]);
    // One complete request first, so descriptors opened lazily are part of the baseline.
    let (status, _) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        vec![],
        None,
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = cubesat.pid();
    let baseline = open_fds(pid);

    let addr = cubesat.ingest;
    let slow = Duration::from_millis(300);
    let h1_head = b"POST /v1/traces HTTP/1.1\r\nhost: cubesat\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100000\r\n\r\n".to_vec();
    let mut h2_settings = PREFACE.to_vec();
    h2_settings.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    let kept_alive = b"GET /nothing HTTP/1.1\r\nhost: cubesat\r\n\r\n".to_vec();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        ("silent TCP", vec![], vec![]),
        ("HTTP/2 preface dripped", vec![], PREFACE.to_vec()),
        ("HTTP/1 headers dripped", vec![], h1_head.clone()),
        ("HTTP/1 body dripped", h1_head, vec![b'x'; 100]),
        ("idle HTTP/2", h2_settings, vec![]),
        ("idle HTTP/1 keep-alive", kept_alive, vec![]),
    ];
    let mut clients = JoinSet::new();
    for (name, first, drip) in cases {
        for _ in 0..15 {
            let (first, drip) = (first.clone(), drip.clone());
            clients.spawn(async move { (name, time_to_close(addr, first, drip, slow).await) });
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = open_fds(pid);
    assert!(
        during >= baseline + 60,
        "the clients are connected: {during} vs {baseline}"
    );
    while let Some(joined) = clients.join_next().await {
        let (name, closed) = joined.unwrap();
        let closed = closed.unwrap_or_else(|| panic!("{name}: still open after 15 s"));
        // Each timeout is 1 s, HTTP/1 idle 2 s (plus the 1 s grace a closing connection gets,
        // and slack for a loaded machine); the defaults are far longer.
        assert!(
            closed < Duration::from_secs(6),
            "{name}: closed after {closed:?}"
        );
        if name == "idle HTTP/1 keep-alive" {
            assert!(
                closed >= Duration::from_millis(1900),
                "kept-alive HTTP/1 gets its idle timeout, not the header timeout: {closed:?}"
            );
        }
    }
    let after = wait_fds_at_most(pid, baseline, Duration::from_secs(5)).await;
    assert!(
        after <= baseline,
        "descriptors back to the baseline: {after} vs {baseline}"
    );
    assert!(
        cubesat
            .metric(
                "cubesat_connections_closed_total{listener=\"ingest\",reason=\"detect_timeout\"}"
            )
            .await
            >= 30.0
    );
    assert!(
        cubesat
            .metric("cubesat_connections_closed_total{listener=\"ingest\",reason=\"idle\"}")
            .await
            >= 15.0
    );
    assert!(
        cubesat
            .metric(
                "cubesat_connections_closed_total{listener=\"ingest\",reason=\"header_timeout\"}"
            )
            .await
            >= 15.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_flood_does_not_stop_ingest_and_accept_errors_are_logged_with_a_count() {
    let (capture, _upstream, cubesat) = serve_to_capture(
        "cfg-token",
        &[
            "--admin-max-connections",
            "8",
            "--protocol-detect-timeout",
            "1s",
        ],
    )
    .await;
    let pid = cubesat.pid();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=96:96"])
        .status()
        .expect("prlimit (util-linux) is installed");
    assert!(status.success());
    let baseline = open_fds(pid);

    // 400 admin connections that never send a byte: at most 8 are kept.
    let mut flood = Vec::new();
    for _ in 0..400 {
        if let Ok(stream) = TcpStream::connect(cubesat.admin).await {
            flood.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = open_fds(pid);
    assert!(
        during <= baseline + 8 + 2,
        "the admin port holds at most its limit: {during} vs {baseline}"
    );
    let channel = envoy_channel(cubesat.ingest).await;
    let started = Instant::now();
    let (body, _) = envoy_report(&envoy_reporter("flooded", 1), "", 1, 0..5);
    send_raw(&channel, body, false)
        .await
        .expect("ingest answers during the flood");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    capture.wait_spans(5, Duration::from_secs(5)).await;

    // Now the ingest port itself runs out of descriptors: accept fails with EMFILE, logged
    // once per interval with a count; when the idle clients are closed, ingest recovers.
    let mut idle = Vec::new();
    for _ in 0..150 {
        if let Ok(stream) = TcpStream::connect(cubesat.ingest).await {
            idle.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(idle);
    drop(flood);
    drop(channel);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let channel = envoy_channel(cubesat.ingest).await;
    let (body, _) = envoy_report(&envoy_reporter("flooded", 1), "", 2, 0..5);
    send_raw(&channel, body, false)
        .await
        .expect("ingest recovered");
    capture.wait_spans(10, Duration::from_secs(5)).await;
    let errors = cubesat
        .metric("cubesat_accept_errors_total{listener=\"ingest\"}")
        .await;
    let logged = cubesat.stderr().matches("accept failed").count();
    assert!(errors >= 2.0, "EMFILE happened and was counted: {errors}");
    assert!(
        logged >= 1 && (logged as f64) < errors && logged <= 3,
        "logged {logged} times for {errors} failures"
    );
    assert!(
        cubesat
            .metric("cubesat_ingest_connections_refused_total{listener=\"admin\"}")
            .await
            >= 300.0
    );
}

/// Sends `n` reports of 6 spans each on one channel; returns the span fields sent.
async fn send_reports(addr: SocketAddr, trace: u64, n: u64) -> Vec<Vec<u8>> {
    let channel = envoy_channel(addr).await;
    let mut sent = Vec::new();
    for i in 0..n {
        let (body, spans) = envoy_report(&envoy_reporter("drain", 3), "", trace, i * 6..i * 6 + 6);
        send_raw(&channel, body, false).await.unwrap();
        sent.extend(spans);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_open_batches_at_once_and_a_stuck_client_does_not_hold_the_drain() {
    let (capture, _upstream, mut cubesat) = ServeToCapture::new()
        .token("cfg-token")
        .batch_timeout("30s")
        .args(&["--drain-timeout", "20s", "--shutdown-grace", "1s"])
        .start()
        .await;
    let sent = send_reports(cubesat.ingest, 7, 5).await;
    // A client stuck in the middle of its request body.
    let mut stuck = TcpStream::connect(cubesat.ingest).await.unwrap();
    stuck
        .write_all(b"POST /api/v2/reports HTTP/1.1\r\nhost: c\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000\r\n\r\n0123456789")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(capture.spans().is_empty(), "held by the 30 s batch timeout");
    let started = Instant::now();
    let code = tokio::task::spawn_blocking(move || {
        let code = cubesat.terminate(Duration::from_secs(15));
        (code, cubesat)
    })
    .await
    .unwrap();
    let (code, cubesat) = code;
    assert_eq!(code, Some(0), "nothing was lost");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stuck client held the drain: {:?}",
        started.elapsed()
    );
    let spans = capture.spans();
    assert_eq!(spans.len(), sent.len());
    let stderr = cubesat.stderr();
    assert!(
        stderr.contains("shutdown: 30 spans delivered, none dropped"),
        "{stderr}"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_upstream_down_logs_the_drop_count_and_exits_3() {
    // Nothing listens on the upstream port: every send fails and is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut cubesat = Cubesat::serve(&[
        "--upstream",
        &url,
        "--batch-timeout",
        "50ms",
        "--drain-timeout",
        "1s",
    ]);
    let sent = send_reports(cubesat.ingest, 9, 20).await;
    assert_eq!(sent.len(), 120);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, cubesat) = tokio::task::spawn_blocking(move || {
        let code = cubesat.terminate(Duration::from_secs(10));
        (code, cubesat)
    })
    .await
    .unwrap();
    assert_eq!(
        code,
        Some(3),
        "the documented status for spans lost at shutdown"
    );
    let stderr = cubesat.stderr();
    assert!(
        stderr.contains("shutdown: 0 spans delivered, 120 spans dropped while draining"),
        "{stderr}"
    );
}

/// A `ReportRequest` whose `auth.access_token` is the raw `token` bytes (prost would refuse
/// to encode non-UTF-8), with `spans` real spans.
fn report_with_raw_token(token: &[u8], spans: u64) -> Bytes {
    let mut buf = pb::ReportRequest {
        reporter: Some(envoy_reporter("tokens", 4)),
        ..Default::default()
    }
    .encode_to_vec();
    let mut auth = vec![0x0a, token.len() as u8];
    auth.extend_from_slice(token);
    buf.push(0x12);
    buf.push(auth.len() as u8);
    buf.extend_from_slice(&auth);
    for id in 0..spans {
        buf.extend_from_slice(&envoy_span_field(5, id + 1, id));
    }
    Bytes::from(buf)
}

/// An HTTP/1.1 POST of a protobuf report with a raw token header: (status, body).
async fn post_with_token(addr: SocketAddr, token: &[u8], body: Bytes) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("http://{addr}/api/v2/reports"))
        .header("content-type", "application/octet-stream")
        .header(
            "lightstep-access-token",
            http::HeaderValue::from_bytes(token).unwrap(),
        )
        .body(Full::new(body))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_bytes_are_refused_wherever_they_come_from_and_counted() {
    let (capture, _upstream, cubesat) = serve_to_capture("cfg-token", &[]).await;
    let channel = envoy_channel(cubesat.ingest).await;
    let status = send_raw(&channel, report_with_raw_token(&[0xcf, 0xfb], 3), false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert!(
        status.message().contains("visible ASCII"),
        "{}",
        status.message()
    );

    let good = report_with_raw_token(b"developer", 2);
    let (code, text) = post_with_token(cubesat.ingest, &[b'a', 0xcf, 0xfb], good.clone()).await;
    assert_eq!(code, 401, "{text}");
    assert!(text.starts_with("Failed: access token"), "{text}");
    let (code, text) = post_with_token(cubesat.ingest, &[b'a'; 600], good.clone()).await;
    assert_eq!(code, 401, "{text}");
    assert!(text.contains("at most 512"), "{text}");

    // Other clients are unaffected; only admitted reports count as received.
    let (code, text) = post_with_token(cubesat.ingest, b"developer", good).await;
    assert_eq!(code, 200, "{text}");
    let spans = capture.wait_spans(2, Duration::from_secs(5)).await;
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].1.token_header.as_deref(), Some("cfg-token"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        capture.spans().len(),
        2,
        "nothing with a bad token went upstream"
    );
    let metric = |s: &'static str| {
        let cubesat = &cubesat;
        async move { cubesat.metric(s).await }
    };
    assert_eq!(
        metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"token_bytes\"}")
            .await,
        2.0
    );
    assert_eq!(
        metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"token_length\"}")
            .await,
        1.0
    );
    assert_eq!(
        metric("cubesat_reports_received_total{protocol=\"lightstep\"}").await,
        1.0
    );
    assert_eq!(
        metric("cubesat_spans_received_total{protocol=\"lightstep\"}").await,
        2.0
    );
}

/// A CORS preflight from `origin`: the `access-control-allow-origin` it got back, if any.
async fn preflight(addr: SocketAddr, path: &str, origin: &str) -> Option<String> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let request = http::Request::options(format!("http://{addr}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,lightstep-access-token",
        )
        .body(Default::default())
        .unwrap();
    let response = client.request(request).await.unwrap();
    response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_never_echoed_in_serve_mode() {
    let closed = Cubesat::serve(&["--upstream", "http://127.0.0.1:9"]);
    let listed = Cubesat::serve(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--cors-allowed-origins",
        "https://app.example",
    ]);
    for path in ["/api/v2/reports", "/v1/traces", "/api/v0/reports"] {
        assert_eq!(
            preflight(closed.ingest, path, "https://evil.example").await,
            None,
            "{path}"
        );
        assert_eq!(
            preflight(listed.ingest, path, "https://evil.example").await,
            None,
            "{path}"
        );
        assert_eq!(
            preflight(listed.ingest, path, "https://app.example")
                .await
                .as_deref(),
            Some("https://app.example"),
            "{path}"
        );
    }
    // Developer mode on a loopback listener lets browser tracers in.
    let dev = Cubesat::start(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    assert_eq!(
        preflight(dev.ingest, "/v1/traces", "http://localhost:3000")
            .await
            .as_deref(),
        Some("*")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_age_rotates_a_real_clients_connection_without_losing_spans() {
    let (capture, _upstream, cubesat) = serve_to_capture(
        "cfg-token",
        &[
            "--max-connection-age",
            "1s",
            "--max-connection-age-grace",
            "1s",
        ],
    )
    .await;
    // tonic's channel reconnects on GOAWAY, like Envoy's and the OTel SDKs' gRPC clients; as
    // a tracer does, a report that fails is kept and sent again.
    let channel = envoy_channel(cubesat.ingest).await;
    let mut sent = Vec::new();
    let mut retries = 0;
    for i in 0..40u64 {
        let (body, spans) = envoy_report(&envoy_reporter("rotating", 6), "", 11, i * 3..i * 3 + 3);
        let mut attempts = 0;
        while let Err(status) = send_raw(&channel, body.clone(), false).await {
            attempts += 1;
            retries += 1;
            assert!(attempts < 5, "report {i} kept failing: {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sent.extend(spans);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = capture.wait_spans(sent.len(), Duration::from_secs(5)).await;
    let mut ids: Vec<u64> = spans
        .iter()
        .map(|(s, _)| s.span_context.as_ref().unwrap().span_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sent.len(), "every span arrived");
    let rotated = cubesat
        .metric("cubesat_connections_closed_total{listener=\"ingest\",reason=\"max_age\"}")
        .await;
    assert!(rotated >= 2.0, "the connection was rotated {rotated} times");
    eprintln!("max-connection-age: {rotated} rotations, {retries} resent reports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_token_file_and_keeps_the_old_token_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first-token\n").unwrap();
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .batch_timeout("50ms")
        .args(&["--access-token-file", file.to_str().unwrap()])
        .start()
        .await;
    let channel = envoy_channel(cubesat.ingest).await;
    let hangup = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(cubesat.pid()),
            nix::sys::signal::Signal::SIGHUP,
        )
        .unwrap()
    };
    let send = |ids: std::ops::Range<u64>| {
        let channel = channel.clone();
        async move {
            let (body, _) = envoy_report(&envoy_reporter("hup", 1), "", 12, ids);
            send_raw(&channel, body, false).await.unwrap();
        }
    };
    send(0..1).await;
    capture.wait_spans(1, Duration::from_secs(5)).await;
    std::fs::write(&file, "second-token\n").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(1..2).await;
    capture.wait_spans(2, Duration::from_secs(5)).await;
    std::fs::write(&file, "not a token\n").unwrap();
    hangup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(2..3).await;
    let spans = capture.wait_spans(3, Duration::from_secs(5)).await;
    let tokens: Vec<_> = spans
        .iter()
        .map(|(_, c)| c.token_header.clone().unwrap_or_default())
        .collect();
    assert_eq!(tokens, ["first-token", "second-token", "second-token"]);
    let stderr = cubesat.stderr();
    assert!(stderr.contains("keeping the current token"), "{stderr}");
    assert!(
        !stderr.contains("second-token"),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_tls_certificate_without_dropping_connections() {
    let tls = TlsIngest::new();
    let (capture, _upstream, cubesat) = serve_to_capture("cfg-token", &tls.args()).await;
    let addr = cubesat.tls.expect("TLS listener");
    let old_ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::copy(&tls.ca, old_ca.path()).unwrap();
    let before = tls_channel(addr, &tls.ca).await;
    let send = |channel: &tonic::transport::Channel, ids: std::ops::Range<u64>| {
        let channel = channel.clone();
        async move {
            let (body, _) = envoy_report(&envoy_reporter("tls-hup", 2), "", 13, ids);
            send_raw(&channel, body, false).await
        }
    };
    send(&before, 0..1).await.unwrap();

    // A renewed certificate from a new CA, written over the files cubesat was started with.
    let dir = tls.ca.parent().unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["certs", "--dir"])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cubesat.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    send(&before, 1..2)
        .await
        .expect("the open connection was kept");
    let renewed = tls_channel(addr, &tls.ca).await;
    send(&renewed, 2..3)
        .await
        .expect("new handshakes get the new certificate");
    let stale =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(old_ca.path()).unwrap(),
                    ))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await;
    assert!(stale.is_err(), "the old certificate is no longer served");
    capture.wait_spans(3, Duration::from_secs(5)).await;
    assert!(cubesat.stderr().contains("TLS certificate and key re-read"));
}
