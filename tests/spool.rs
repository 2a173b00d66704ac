//! The crash-safe spool (`--spool-dir`) end to end, against the real binary: reports
//! acknowledged while the upstream is down survive `kill -9` and reach the upstream after a
//! restart (at least once; what was delivered before the kill is not sent again); damaged
//! spool files are skipped with a log line and a metric; a small memory budget spills to disk
//! and stays within its bound; a full spool refuses with 503 / `UNAVAILABLE`; with a spool an
//! upstream outage keeps `/_ready` 200 until the spool is nearly full.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use cubesat::pipeline::spool::{record, segment};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const TOKEN: &str = "spool-token-4711";

/// An address nothing listens on (yet): the upstream is down.
fn dead_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// How often each (trace id, span id) arrived upstream as a Lightstep span.
fn arrivals(capture: &Capture) -> HashMap<(u64, u64), usize> {
    let mut seen = HashMap::new();
    for (span, _) in capture.spans() {
        let context = span.span_context.unwrap_or_default();
        *seen.entry((context.trace_id, context.span_id)).or_default() += 1;
    }
    seen
}

/// Waits until every id in `want` has arrived at least once; returns the arrivals.
async fn wait_for_all(
    capture: &Capture,
    want: &[(u64, u64)],
    within: Duration,
) -> HashMap<(u64, u64), usize> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = arrivals(capture);
        let missing = want.iter().filter(|id| !seen.contains_key(id)).count();
        if missing == 0 {
            return seen;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} acknowledged spans never reached the upstream",
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `reports` Envoy-like reports of `spans` spans each on trace `trace`; every one must
/// be acknowledged. Returns the ids and the encoded span fields sent.
async fn send_acknowledged(
    cubesat: &Cubesat,
    trace: u64,
    reports: u64,
    spans: u64,
) -> (Vec<(u64, u64)>, Vec<Vec<u8>>) {
    let channel = envoy_channel(cubesat.ingest).await;
    let (mut ids, mut fields) = (Vec::new(), Vec::new());
    for i in 0..reports {
        let reporter = envoy_reporter("reviews.default", 1 + i % 3);
        let first = i * spans + 1;
        let (body, sent) = envoy_report(&reporter, "", trace, first..first + spans);
        send_raw(&channel, body, false)
            .await
            .unwrap_or_else(|status| panic!("report {i} refused: {status:?}"));
        ids.extend((first..first + spans).map(|id| (trace, id)));
        fields.extend(sent);
    }
    (ids, fields)
}

fn spool_args<'a>(url: &'a str, dir: &'a str) -> Vec<&'a str> {
    vec![
        "--upstream",
        url,
        "--access-token",
        TOKEN,
        "--batch-timeout",
        "100ms",
        "--spool-dir",
        dir,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_spooled_reports_then_restart_delivers_every_acknowledged_span() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    // The upstream is up at first: these spans are delivered (and acknowledged) before the kill.
    let early = Capture::default();
    let early_upstream = early.serve("127.0.0.1:0", None).await;
    let early_url = format!("http://{}", early_upstream.addr);
    let mut first = Cubesat::serve(&spool_args(&early_url, dir));
    let (delivered, _) = send_acknowledged(&first, 76, 5, 10).await;
    wait_for_all(&early, &delivered, Duration::from_secs(10)).await;
    // Acknowledged too (the upstream's answer came back): the spool holds nothing.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.metric("cubesat_spool_records").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Then it goes down: these wait in the spool when the process is killed.
    early_upstream.stop().await;
    let (ids, fields) = send_acknowledged(&first, 77, 20, 10).await;
    // And OTLP over HTTP: another protocol, another batch key.
    let mut otlp_ids = Vec::new();
    for i in 0..5u8 {
        let span_id = vec![0xA0, i, 1, 2, 3, 4, 5, 6];
        let export = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![7; 16],
                        span_id: span_id.clone(),
                        name: format!("otlp-{i}"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (status, body) = post(
            first.ingest,
            "/v1/traces",
            "application/x-protobuf",
            export.encode_to_vec(),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        otlp_ids.push(span_id);
    }
    assert!(first.metric("cubesat_spool_records").await >= 25.0);
    let (_, diagnostics) = first.admin_get("/diagnostics").await;
    let diagnostics: serde_json::Value = serde_json::from_str(&diagnostics).unwrap();
    assert_eq!(diagnostics["spool"]["dir"], dir, "{diagnostics}");
    assert!(diagnostics["spool"]["records"].as_u64() >= Some(25));
    assert!(
        !diagnostics.to_string().contains(TOKEN),
        "the token never shows"
    );
    first.kill9();

    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let url = format!("http://{}", upstream.addr);
    let second = Cubesat::serve(&spool_args(&url, dir));
    let seen = wait_for_all(&capture, &ids, Duration::from_secs(30)).await;
    // Byte for byte, with the configured token.
    let requests = capture.requests();
    for field in &fields {
        let found: usize = requests.iter().map(|r| occurrences(&r.raw, field)).sum();
        assert!(found >= 1, "a span arrived altered");
    }
    assert!(
        requests
            .iter()
            .all(|r| r.token_header.as_deref() == Some(TOKEN))
    );
    let otlp = capture
        .wait_otlp_spans(otlp_ids.len(), Duration::from_secs(20))
        .await;
    for id in &otlp_ids {
        assert!(otlp.iter().any(|(span, _, _)| &span.span_id == id));
    }
    // The reports delivered before the kill share the segment with the undelivered ones; its
    // acknowledgement file says they were delivered, so they are not sent again. (Only a
    // batch the upstream took in the one `write` before its acknowledgement lands could be.)
    let again = delivered.iter().filter(|id| seen.contains_key(id)).count();
    let duplicates: usize = seen.values().map(|n| n - 1).sum::<usize>() + again;
    eprintln!(
        "delivered {} Lightstep spans at least once; {duplicates} duplicates ({again} of the {} delivered before the kill sent again)",
        ids.len(),
        delivered.len()
    );
    assert_eq!(
        again, 0,
        "delivered and acknowledged before the kill: not sent again"
    );
    assert!(
        second.stderr().contains("delivered=5"),
        "the restart says what it skipped: {}",
        second.stderr()
    );
    assert!(
        second
            .wait_metric(
                "cubesat_spool_replayed_records_total",
                25.0,
                Duration::from_secs(5)
            )
            .await
            >= 25.0
    );
    assert!(second.stderr().contains("spool: replaying"));
    // Delivered: acknowledged, and the spool empties.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while second.metric("cubesat_spool_records").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "spool never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!second.stderr().contains(TOKEN));
}

/// The records of `file`, as the spool's own scanner finds them.
fn records(file: &Path) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = std::fs::read(file).unwrap();
    let found = record::scan(&bytes);
    assert!(found.damaged.is_empty());
    (bytes.clone(), found.records)
}

/// The span ids in the record at `at` of `bytes`.
fn ids_in(bytes: &[u8], (at, len): (usize, usize)) -> Vec<(u64, u64)> {
    let decoded = record::decode(Bytes::copy_from_slice(&bytes[at..at + len])).unwrap();
    decoded
        .spans
        .runs
        .iter()
        .flat_map(|run| {
            let report = cubesat::proto::collector::ReportRequest::decode(run.clone()).unwrap();
            report.spans.into_iter().map(|s| {
                let c = s.span_context.unwrap();
                (c.trace_id, c.span_id)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_spool_files_are_skipped_with_a_log_line_and_a_metric() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    let down = format!("http://{}", dead_upstream());
    let mut args = spool_args(&down, dir);
    // 1 MiB segments (a sixteenth of the limit), so a few MiB of reports make several files.
    args.extend(["--spool-bytes", "16MiB", "--max-message-bytes", "1MiB"]);
    let mut first = Cubesat::serve(&args);
    let (ids, _) = send_acknowledged(&first, 91, 500, 20).await;
    first.kill9();

    let files = segment::list(spool.path()).unwrap();
    assert!(files.len() >= 3, "{} segment files", files.len());
    // A flipped byte in the middle of the first file's middle record.
    let (mut bytes, found) = records(&files[0].1);
    let hit = found[found.len() / 2];
    let mut lost = ids_in(&bytes, hit);
    bytes[hit.0 + hit.1 / 2] ^= 0x5A;
    std::fs::write(&files[0].1, &bytes).unwrap();
    // The second file's last record cut in half, as if the machine died mid-write.
    let (bytes, found) = records(&files[1].1);
    let last = *found.last().unwrap();
    lost.extend(ids_in(&bytes, last));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1].1)
        .unwrap();
    file.set_len((last.0 + last.1 / 2) as u64).unwrap();
    drop(file);

    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let url = format!("http://{}", upstream.addr);
    let mut args = spool_args(&url, dir);
    args.extend(["--spool-bytes", "16MiB", "--max-message-bytes", "1MiB"]);
    let second = Cubesat::serve(&args);
    let kept: Vec<(u64, u64)> = ids
        .iter()
        .filter(|id| !lost.contains(id))
        .copied()
        .collect();
    assert_eq!(
        kept.len(),
        ids.len() - 40,
        "two reports of 20 spans damaged"
    );
    let seen = wait_for_all(&capture, &kept, Duration::from_secs(60)).await;
    assert!(
        lost.iter().all(|id| !seen.contains_key(id)),
        "damaged records are skipped, not delivered garbled"
    );
    assert_eq!(
        second.metric("cubesat_spool_corrupt_records_total").await,
        2.0
    );
    let log = second.stderr();
    for (_, path) in &files[..2] {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains(name) && l.contains("damaged") && l.contains("offset")),
            "no log line names {name}:\n{log}"
        );
    }
    second.wait_ready(200, Duration::from_secs(10)).await;
}

/// A Lightstep report of `spans` spans, each carrying `pad` bytes in a tag.
fn padded_report(trace: u64, first: u64, spans: u64, pad: usize) -> Bytes {
    let tag = cubesat::proto::collector::KeyValue {
        key: "payload".into(),
        value: Some(cubesat::proto::collector::key_value::Value::StringValue(
            "x".repeat(pad),
        )),
    };
    cubesat::proto::collector::ReportRequest {
        reporter: Some(envoy_reporter("ratings.default", 5)),
        spans: (first..first + spans)
            .map(|span_id| cubesat::proto::collector::Span {
                span_context: Some(cubesat::proto::collector::SpanContext {
                    trace_id: trace,
                    span_id,
                    baggage: Default::default(),
                }),
                operation_name: "spill".into(),
                tags: vec![tag.clone()],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec()
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_memory_budget_spills_to_the_spool_and_delivers_everything_later() {
    const BUDGET: u64 = 16 << 20;
    const SLACK: u64 = 96 << 20;
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    let upstream_addr = dead_upstream();
    let url = format!("http://{upstream_addr}");
    let mut args = spool_args(&url, dir);
    args.extend([
        "--buffer-bytes",
        "16MiB",
        "--max-message-bytes",
        "1MiB",
        "--spool-bytes",
        "512MiB",
    ]);
    let cubesat = Cubesat::serve(&args);
    // 64 MiB of reports, four times the memory budget, while the upstream is down.
    let channel = envoy_channel(cubesat.ingest).await;
    let (reports, spans, pad) = (1024u64, 16u64, 4000usize);
    for i in 0..reports {
        let body = padded_report(55, i * spans + 1, spans, pad);
        send_raw(&channel, body, false)
            .await
            .unwrap_or_else(|status| panic!("report {i} refused: {status:?}"));
    }
    let spilled = cubesat.metric("cubesat_spool_spilled_records_total").await;
    assert!(spilled > 0.0, "past half the budget, reports wait on disk");
    let (_, diagnostics) = cubesat.admin_get("/diagnostics").await;
    eprintln!("spool while the upstream is down: {diagnostics}");

    let capture = Capture::default();
    let _upstream = capture.serve(&upstream_addr.to_string(), None).await;
    let forwarded = cubesat
        .wait_metric(
            "cubesat_spans_forwarded_total",
            (reports * spans) as f64,
            Duration::from_secs(120),
        )
        .await;
    assert!(forwarded >= (reports * spans) as f64, "{forwarded}");
    let want: Vec<(u64, u64)> = (1..=reports * spans).map(|id| (55, id)).collect();
    let seen = wait_for_all(&capture, &want, Duration::from_secs(10)).await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("{spilled} reports spilled; {duplicates} duplicate spans");
    let peak = peak_rss(cubesat.pid());
    eprintln!("peak RSS of cubesat: {} MiB", peak >> 20);
    assert!(
        peak <= BUDGET + SLACK,
        "peak RSS {} MiB over budget + slack",
        peak >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_refuses_with_unavailable_and_says_why() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    let down = format!("http://{}", dead_upstream());
    let mut args = spool_args(&down, dir);
    args.extend(["--spool-bytes", "2MiB", "--max-message-bytes", "1MiB"]);
    let cubesat = Cubesat::serve(&args);
    let channel = envoy_channel(cubesat.ingest).await;
    let mut refused = None;
    for i in 0..200u64 {
        let body = padded_report(3, i * 4 + 1, 4, 8000);
        if let Err(status) = send_raw(&channel, body, false).await {
            refused = Some((i, status));
            break;
        }
    }
    let (i, status) = refused.expect("a 2 MiB spool fills up");
    assert!(i > 10, "refused only once full ({i} accepted)");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("spool full"), "{status:?}");
    let (code, body) = post(
        cubesat.ingest,
        "/api/v2/reports",
        "application/octet-stream",
        padded_report(3, 100_000, 4, 8000).to_vec(),
        None,
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("--spool-bytes"), "{body}");
    assert!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"spool_full\"}")
            .await
            >= 2.0
    );
    assert!(
        cubesat
            .metric("cubesat_spans_dropped_total{reason=\"spool_full\"}")
            .await
            >= 8.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_spool_an_upstream_outage_keeps_it_ready_until_the_spool_is_nearly_full() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let addr = upstream.addr;
    let url = format!("http://{addr}");
    let mut args = spool_args(&url, dir);
    args.extend(["--spool-bytes", "2MiB", "--max-message-bytes", "1MiB"]);
    let cubesat = Cubesat::serve(&args);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    upstream.stop().await;
    let channel = envoy_channel(cubesat.ingest).await;
    // About 32 KiB a report: 20 of them fill a third of the spool.
    let mut sent = 0u64;
    for _ in 0..20 {
        let body = padded_report(4, sent * 4 + 1, 4, 8000);
        send_raw(&channel, body, false)
            .await
            .expect("accepted into the spool while the upstream is down");
        sent += 1;
    }
    // The satellite knows the upstream is down, and stays ready: reports wait on disk.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, diagnostics) = cubesat.admin_get("/diagnostics").await;
        let diagnostics: serde_json::Value = serde_json::from_str(&diagnostics).unwrap();
        if diagnostics["upstream"]["reachable"] == false {
            assert_eq!(diagnostics["spool"]["nearly_full"], false, "{diagnostics}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{diagnostics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = cubesat.admin_get("/_ready").await;
    assert_eq!(code, 200, "upstream down, spool with room: {body}");
    // Filled: not ready (before or at the first refusal), and says why.
    let mut refused = false;
    while sent < 200 && !refused {
        let body = padded_report(4, sent * 4 + 1, 4, 8000);
        refused = send_raw(&channel, body, false).await.is_err();
        sent += 1;
    }
    assert!(refused, "a 2 MiB spool fills up");
    let (code, body) = cubesat.admin_get("/_ready").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("spool nearly full"), "{body}");
    // The upstream comes back: the spool drains and the satellite is ready again.
    let _back = capture.serve(&addr.to_string(), None).await;
    let accepted: Vec<(u64, u64)> = (1..=(sent - 1) * 4).map(|id| (4, id)).collect();
    wait_for_all(&capture, &accepted, Duration::from_secs(30)).await;
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
}

#[test]
fn a_spool_dir_that_cannot_be_written_is_a_config_error_naming_the_key() {
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cubesat"))
        .args(["serve", "--spool-dir"])
        .arg(blocker.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`spool-dir`") && stderr.contains("point spool-dir elsewhere"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_and_sigterm_keep_spans_in_the_spool_for_the_next_start() {
    let spool = tempfile::tempdir().unwrap();
    let dir = spool.path().to_str().unwrap();
    let down = format!("http://{}", dead_upstream());
    let mut args = spool_args(&down, dir);
    args.extend(["--retry-max-elapsed", "1s", "--drain-timeout", "2s"]);
    let mut first = Cubesat::serve(&args);
    let (ids, _) = send_acknowledged(&first, 13, 10, 5).await;
    // Retries run out within about a second: the batches go back to the spool, not dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !first.stderr().contains("returned to the spool") {
        assert!(std::time::Instant::now() < deadline, "{}", first.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        first
            .metric("cubesat_spans_dropped_total{reason=\"retry_exhausted\"}")
            .await,
        0.0
    );
    let code = tokio::task::spawn_blocking(move || {
        let code = first.terminate(Duration::from_secs(15));
        (code, first)
    })
    .await
    .unwrap();
    let (code, first) = code;
    assert_eq!(code, Some(0), "kept in the spool is not dropped");
    assert!(
        first
            .stderr()
            .contains("undelivered reports stay in the spool")
    );

    let capture = Capture::default();
    let upstream = capture.serve("127.0.0.1:0", None).await;
    let url = format!("http://{}", upstream.addr);
    let _second = Cubesat::serve(&spool_args(&url, dir));
    wait_for_all(&capture, &ids, Duration::from_secs(30)).await;
}
