//! The real C++ streaming recorder end to end: PyPI `lightstep-streaming==0.14.0` (the C++
//! tracer behind a Python binding) streams spans into cubesat over its chunked
//! `POST /api/v2/reports` uploads, and the capturing upstream must receive every span once,
//! intact: names, ids, typed tags, logs, baggage, parent references, reporter and token. One run is
//! long enough to cross the recorder's periodic reconnects (8 connections, each replaced after
//! 5-7 s); a TCP relay between the tracer and cubesat times the connections to prove it.
//!
//! The 2020 wheel needs `tests/shim/py_ssize_t_clean.c` preloaded on current Pythons; each
//! test compiles it with the machine's `cc` into its own temporary directory.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use cubesat::proto::collector as pb;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "configured-token";
const TRACER_TOKEN: &str = "streaming-token";

/// Compiles the `PY_SSIZE_T_CLEAN` shim into `dir` with `cc`; returns the shared object.
fn build_shim(dir: &Path) -> PathBuf {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/shim/py_ssize_t_clean.c");
    let out = dir.join("py_ssize_t_clean.so");
    let status = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(source)
        .arg("-ldl")
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "compiling {source} with `cc` failed ({status:?}); the streaming tests need a C compiler"
    );
    out
}

/// Runs `streaming_send.py` against `addr` for `seconds` of tick spans; returns what it made.
async fn send_with_recorder(addr: SocketAddr, seconds: f64) -> Vec<Value> {
    let python = streaming_python();
    let dir = tempfile::tempdir().unwrap();
    let shim = build_shim(dir.path());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/streaming_send.py"
    );
    let mut cmd = Command::new(python);
    cmd.args([
        script,
        &addr.ip().to_string(),
        &addr.port().to_string(),
        TRACER_TOKEN,
        &seconds.to_string(),
    ])
    .env("LD_PRELOAD", &shim);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("PY_SSIZE_T_CLEAN"),
        "the shim {} did not redirect the extension's argument parsing:\n{stderr}",
        shim.display()
    );
    assert!(
        out.status.success(),
        "streaming recorder failed: {stdout}{stderr}"
    );
    // The recorder prints its errors (failed writes, bad replies) even when not verbose.
    assert!(
        !stderr.contains("Error"),
        "the recorder reported errors:\n{stderr}"
    );
    serde_json::from_str::<Value>(&stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// When each connection through a [`recording_relay`] opened and how long it lived, in the
/// order they closed.
type Lifetimes = Arc<Mutex<Vec<(Instant, Duration)>>>;

/// A TCP relay to `target` that records the lifetime of each connection it carried.
async fn recording_relay(target: SocketAddr) -> (SocketAddr, Lifetimes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(Mutex::new(Vec::new()));
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let opened = Instant::now();
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                seen.lock().unwrap().push((opened, opened.elapsed()));
            });
        }
    });
    (addr, connections)
}

/// cubesat forwarding to a fresh capture.
async fn cubesat_with_capture() -> (Cubesat, Capture, CaptureServer) {
    let (capture, upstream, cubesat) = serve_to_capture(TOKEN, &[]).await;
    (cubesat, capture, upstream)
}

/// The protobuf value the C++ tracer writes for a tag or log value made in Python.
fn expected_value(value: &Value) -> pb::key_value::Value {
    use pb::key_value::Value as V;
    match value {
        Value::Bool(b) => V::BoolValue(*b),
        Value::Number(n) if n.is_i64() => V::IntValue(n.as_i64().unwrap()),
        Value::Number(n) => V::DoubleValue(n.as_f64().unwrap()),
        Value::String(s) => V::StringValue(s.clone()),
        other => panic!("the sender makes no {other} values"),
    }
}

fn kv_map(fields: &[pb::KeyValue]) -> Vec<(String, pb::key_value::Value)> {
    let mut out: Vec<_> = fields
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.clone().expect("a KeyValue has a value"),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn expected_map(object: &Value) -> Vec<(String, pb::key_value::Value)> {
    let mut out: Vec<_> = object
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), expected_value(v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The C++ tracer writes every log value as a string (an int 3 as "3").
fn expected_log(object: &Value) -> Vec<(String, pb::key_value::Value)> {
    let mut out: Vec<_> = object
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) if n.is_i64() => n.to_string(),
                other => panic!("the sender logs no {other} values"),
            };
            (k.clone(), pb::key_value::Value::StringValue(text))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Checks every span the recorder made against what the upstream received, span by span;
/// every span must arrive exactly once.
fn check_spans(made: &[Value], received: &[(pb::Span, Captured)], started: SystemTime) {
    assert_eq!(received.len(), made.len(), "each span arrives exactly once");
    let now = SystemTime::now();
    for expected in made {
        let span_id: u64 = expected["span_id"].as_str().unwrap().parse().unwrap();
        let trace_id: u64 = expected["trace_id"].as_str().unwrap().parse().unwrap();
        let (span, request) = received
            .iter()
            .find(|(s, _)| s.span_context.as_ref().map(|c| c.span_id) == Some(span_id))
            .unwrap_or_else(|| panic!("span {expected} arrived"));
        let name = expected["name"].as_str().unwrap();
        assert_eq!(span.operation_name, name);
        let context = span.span_context.as_ref().unwrap();
        assert_eq!(context.trace_id, trace_id);
        let baggage: std::collections::HashMap<String, String> =
            serde_json::from_value(expected["baggage"].clone()).unwrap();
        assert_eq!(context.baggage, baggage, "baggage of {name}");

        let references: Vec<(i32, u64, u64)> = span
            .references
            .iter()
            .map(|r| {
                let c = r.span_context.as_ref().expect("a reference has a context");
                (r.relationship, c.trace_id, c.span_id)
            })
            .collect();
        let expected_references: Vec<(i32, u64, u64)> = expected["references"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(matches!(r[0].as_i64(), Some(0 | 1)), "{r}");
                (
                    // The recorder writes FOLLOWS_FROM references as CHILD_OF (relationship
                    // 0 in its own upload bytes); cubesat passes them on untouched.
                    0,
                    r[1].as_str().unwrap().parse().unwrap(),
                    r[2].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect();
        assert_eq!(references, expected_references, "references of {name}");

        assert_eq!(
            kv_map(&span.tags),
            expected_map(&expected["tags"]),
            "tags of {name}"
        );
        let logs = expected["logs"].as_array().unwrap();
        assert_eq!(span.logs.len(), logs.len(), "logs of {name}");
        for (log, want) in span.logs.iter().zip(logs) {
            assert_eq!(kv_map(&log.fields), expected_log(want), "log of {name}");
            let at: SystemTime = log.timestamp.unwrap().try_into().unwrap();
            assert!(started <= at && at <= now, "log time of {name}");
        }
        let start: SystemTime = span.start_timestamp.unwrap().try_into().unwrap();
        assert!(started <= start && start <= now, "start time of {name}");
        assert!(span.duration_micros < 60_000_000, "duration of {name}");

        // The report carries the tracer's own token, so it wins over the configured one.
        assert_eq!(request.token_header.as_deref(), Some(TRACER_TOKEN));
        let report = request.decode();
        assert_eq!(report.auth.unwrap().access_token, TRACER_TOKEN);
        let reporter_tags = kv_map(&report.reporter.unwrap().tags);
        for (key, value) in [
            ("lightstep.component_name", "checkout"),
            ("lightstep.tracer_platform", "c++"),
            ("lightstep.tracer_version", "0.14.0"),
            ("deployment", "canary"),
        ] {
            assert!(
                reporter_tags
                    .iter()
                    .any(|(k, v)| k == key && *v == pb::key_value::Value::StringValue(value.into())),
                "reporter tag {key}={value} in {reporter_tags:?}"
            );
        }
        assert!(
            report.internal_metrics.is_none(),
            "the recorder's drop counts stay in cubesat"
        );
    }
}

/// cubesat counted `spans` received and nothing rejected or reported dropped by the client.
async fn check_counters(cubesat: &Cubesat, spans: usize) {
    assert_eq!(
        cubesat
            .metric("cubesat_spans_received_total{protocol=\"lightstep\"}")
            .await,
        spans as f64
    );
    for series in [
        "cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"malformed\"}",
        "cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"unavailable\"}",
        "cubesat_client_dropped_spans_total{protocol=\"lightstep\"}",
    ] {
        assert_eq!(cubesat.metric(series).await, 0.0, "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_recorder_spans_arrive_intact() {
    let (cubesat, capture, _upstream) = cubesat_with_capture().await;
    let started = SystemTime::now();
    let made = send_with_recorder(cubesat.ingest, 1.0).await;
    assert!(made.len() > 5, "the sender made its spans: {made:?}");

    capture
        .wait_spans(made.len(), Duration::from_secs(10))
        .await;
    // Anything later would be a duplicate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_spans(&made, &capture.spans(), started);
    check_counters(&cubesat, made.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_recorder_spans_survive_its_periodic_reconnects() {
    let (cubesat, capture, _upstream) = cubesat_with_capture().await;
    let (relay, connections) = recording_relay(cubesat.ingest).await;
    let started = SystemTime::now();
    let started_at = Instant::now();
    // Long enough for each of the 8 first uploads (5-7 s each) to be replaced, with 2 s to
    // spare before the tracer closes, and too short for the replacements (5 s and more).
    let made = send_with_recorder(relay, 9.0).await;
    capture
        .wait_spans(made.len(), Duration::from_secs(10))
        .await;
    // Anything later would be a duplicate; the relay has seen every connection close.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut connections = connections.lock().unwrap().clone();
    connections.sort_by_key(|(opened, _)| *opened);
    assert!(
        connections.len() >= 16,
        "8 streams, each replaced within 7 s: {connections:?}"
    );
    // The first 8 were replaced by the recorder itself (after 5-7 s) while spans were still
    // being made, not closed at the end with the tracer; the later spans travelled on the
    // replacements.
    let tracer_closed = connections
        .iter()
        .map(|(opened, lived)| *opened + *lived)
        .max()
        .unwrap();
    for (opened, lived) in &connections[..8] {
        assert!(
            *lived >= Duration::from_secs(4)
                && *opened + *lived + Duration::from_millis(500) < tracer_closed,
            "a first stream lived {lived:?} (opened {:?} after the start, the tracer closed \
             after {:?})",
            opened.duration_since(started_at),
            tracer_closed.duration_since(started_at)
        );
    }
    let received = capture.spans();
    check_spans(&made, &received, started);
    // The ticks were made over 9 s: they left in many upstream batches, not one at the end.
    let batches = capture
        .requests()
        .iter()
        .filter(|r| r.path == REPORT_PATH)
        .count();
    assert!(batches > 3, "{batches} upstream requests");
    check_counters(&cubesat, made.len()).await;
}
