//! What an operator meets first, through the real binary: `/diagnostics` (HTML and JSON) with
//! every secret masked, the readiness that start-up logs, the warning when `serve` has no
//! token, developer mode that keeps spans without counting drops, a bad TOML value explained
//! like a bad flag, and the compiled-in CA roots when the system has none.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Cubesat, post};
use serde_json::Value;

const TOKEN: &str = "tok-ops-8f3a9c";
const PASSWORD: &str = "s3cr3t-pass-771";

async fn get_with_accept(addr: std::net::SocketAddr, path: &str, accept: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let request = http::Request::get(format!("http://{addr}{path}"))
        .header("accept", accept)
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.expect("GET");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_page_shows_state_and_masks_token_and_userinfo() {
    // An upstream nobody listens on, with userinfo in its URL: not ready, a last error.
    let upstream = format!("http://ops-user:{PASSWORD}@127.0.0.1:1");
    let cubesat = Cubesat::serve(&["--upstream", &upstream, "--access-token", TOKEN]);
    cubesat.wait_ready(503, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // A probe or two failed.

    let (status, json) = get_with_accept(cubesat.admin, "/diagnostics", "application/json").await;
    assert_eq!(status, 200, "{json}");
    let d: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["mode"], "serve");
    assert_eq!(d["ready"], false);
    assert_eq!(d["not_ready_reason"], "upstream unreachable");
    assert_eq!(d["upstream"]["url"], "http://***@127.0.0.1:1/");
    assert_eq!(d["upstream"]["reachable"], false);
    assert_eq!(d["upstream"]["ca_roots"], "none (plaintext upstream)");
    assert_eq!(d["upstream"]["last_error"]["code"], "unavailable", "{d}");
    assert!(d["upstream"]["last_error"]["message"].is_string(), "{d}");
    assert_eq!(d["listeners"]["ingest"], cubesat.ingest.to_string());
    assert_eq!(d["buffer"]["capacity_bytes"], 256 << 20);
    assert!(d["spool"].is_null());
    assert!(d["spans"]["dropped"].is_object());
    assert_eq!(d["build"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(d["config"]["access-token"], "set (hidden)");
    assert_eq!(d["config"]["upstream"], "http://***@127.0.0.1:1/");
    assert_eq!(d["config"]["batch-timeout"], "500ms");

    // A browser gets the page.
    let (status, html) = get_with_accept(
        cubesat.admin,
        "/diagnostics",
        "text/html,application/xhtml+xml,*/*;q=0.8",
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<h2>Upstream</h2>"), "{html}");
    assert!(html.contains("upstream unreachable"), "{html}");

    for (what, text) in [
        ("JSON", json.as_str()),
        ("HTML", html.as_str()),
        ("log", &cubesat.stderr()),
    ] {
        assert!(!text.contains(TOKEN), "token in the {what}: {text}");
        assert!(!text.contains(PASSWORD), "password in the {what}: {text}");
        assert!(!text.contains("ops-user"), "userinfo in the {what}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_the_real_readiness_and_warns_without_a_token() {
    let cubesat = Cubesat::serve(&["--upstream", "http://127.0.0.1:1"]);
    cubesat.wait_ready(503, Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = cubesat.stderr();
        if log.contains("cubesat not ready") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        log.contains("cubesat not ready") && log.contains("upstream unreachable"),
        "{log}"
    );
    assert!(!log.contains("ready to accept spans"), "{log}");
    assert!(log.contains("no access token configured"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn developer_mode_without_upstream_keeps_spans_and_counts_no_drops() {
    let cubesat = Cubesat::start(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    let trace = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "ops-dev"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "GET /", "kind": 2,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000100000000"
        }]}]
    }]});
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/json",
        trace.to_string().into_bytes(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cubesat.metric("cubesat_store_spans_stored_total").await < 1.0 {
        assert!(std::time::Instant::now() < deadline, "span never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the batch timeout: the batch has reached the (switched off) exporter.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, metrics) = cubesat.admin_get("/metrics").await;
    assert!(
        !metrics.contains("cubesat_spans_dropped_total{"),
        "developer mode counted drops: {metrics}"
    );
    assert_eq!(cubesat.metric("cubesat_buffer_bytes").await, 0.0);
}

#[test]
fn a_bad_toml_value_names_the_key_and_what_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cubesat.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\ndrain-timeout = \"soon\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "line 2: invalid value \"soon\" for `drain-timeout`: a duration such as 500ms"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_system_ca_roots_the_compiled_in_roots_verify_the_upstream() {
    // rustls-native-certs reads only SSL_CERT_FILE / SSL_CERT_DIR when they are set: empty
    // ones stand for a system without a CA store (a scratch image).
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("none.pem");
    std::fs::write(&empty, "").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cubesat"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ])
    .args(["--upstream", "https://127.0.0.1:1", "--access-token", TOKEN])
    .env("SSL_CERT_FILE", &empty)
    .env("SSL_CERT_DIR", dir.path())
    .env("RUST_LOG", "info");
    let cubesat = Cubesat::start_command(cmd);
    let (_, json) = get_with_accept(cubesat.admin, "/diagnostics", "application/json").await;
    let d: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        d["upstream"]["ca_roots"],
        "compiled-in Mozilla roots (webpki-roots)"
    );
    assert!(cubesat.stderr().contains("no system CA roots found"));

    // With the system store, its roots are used.
    let cubesat = Cubesat::serve(&["--upstream", "https://127.0.0.1:1"]);
    let (_, json) = get_with_accept(cubesat.admin, "/diagnostics", "application/json").await;
    let d: Value = serde_json::from_str(&json).unwrap();
    let roots = d["upstream"]["ca_roots"].as_str().unwrap();
    assert!(roots.starts_with("system ("), "{roots}");
}

#[test]
fn certs_keep_existing_leaves_the_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let status = Command::new(env!("CARGO_BIN_EXE_cubesat"))
            .args(["certs", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::read(dir.path().join("cacert.pem")).unwrap()
    };
    let first = run(&[]);
    assert_eq!(run(&["--keep-existing"]), first);
    assert_ne!(run(&[]), first, "without the flag the CA is made anew");
}
