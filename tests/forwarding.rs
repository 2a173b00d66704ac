//! End to end: the real binary between Envoy-like gRPC clients and a capturing upstream.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use cubesat::proto::collector as pb;
use prost::Message;

const TOKEN: &str = "configured-token-123";

/// Checks that every sent span field arrived exactly once, byte for byte.
fn assert_spans_arrived_untouched(capture: &Capture, sent: &[Vec<u8>]) {
    let requests = capture.requests();
    for span in sent {
        let found: usize = requests.iter().map(|r| occurrences(&r.raw, span)).sum();
        assert_eq!(found, 1, "span bytes must arrive exactly once, untouched");
    }
    let total: usize = requests.iter().map(|r| r.decode().spans.len()).sum();
    assert_eq!(total, sent.len(), "no extra spans upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_reports_arrive_byte_for_byte_with_the_token_in_fewer_requests() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("300ms")
        .start()
        .await;

    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("productpage.default", 42);
    let mut sent = Vec::new();
    for i in 0..20u64 {
        // Envoy with no token configured sends an empty body token: the configured one is used.
        let (body, spans) = envoy_report(&reporter, "", 7, i * 10..i * 10 + 10);
        let response = send_raw(&channel, body, i % 2 == 1)
            .await
            .expect("report accepted");
        assert!(response.errors.is_empty(), "no error text on success");
        let (rx, tx) = (
            response.receive_timestamp.unwrap(),
            response.transmit_timestamp.unwrap(),
        );
        assert!(rx.seconds > 1_700_000_000 && (tx.seconds, tx.nanos) >= (rx.seconds, rx.nanos));
        sent.extend(spans);
    }
    capture
        .wait_spans(sent.len(), Duration::from_secs(10))
        .await;
    assert_spans_arrived_untouched(&capture, &sent);

    let requests = capture.requests();
    assert!(
        requests.len() < 20,
        "batching: {} upstream requests for 20 reports",
        requests.len()
    );
    for request in &requests {
        assert_eq!(
            request.token_header.as_deref(),
            Some(TOKEN),
            "token in metadata"
        );
        let decoded = request.decode();
        assert_eq!(
            decoded.auth.unwrap().access_token,
            TOKEN,
            "token in the body"
        );
        assert_eq!(
            decoded.reporter.unwrap(),
            reporter,
            "reporter forwarded as sent"
        );
    }

    let forwarded = cubesat
        .wait_metric(
            "cubesat_spans_forwarded_total",
            200.0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(forwarded, 200.0);
    assert_eq!(
        cubesat
            .metric("cubesat_spans_received_total{protocol=\"lightstep\"}")
            .await,
        200.0
    );
    let (_, metrics) = cubesat.admin_get("/metrics").await;
    assert!(
        !metrics.contains(TOKEN),
        "the token never appears in metrics"
    );
    assert!(
        !cubesat.stderr().contains(TOKEN),
        "the token never appears in logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reports_own_token_wins_and_tokens_never_share_a_request() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("300ms")
        .start()
        .await;

    // Same reporter bytes, different projects: only the token tells them apart.
    let reporter = envoy_reporter("reviews.default", 9);
    let (a, b) = (
        envoy_channel(cubesat.ingest).await,
        envoy_channel(cubesat.ingest).await,
    );
    let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
    for i in 0..10u64 {
        let (body, spans) = envoy_report(&reporter, "project-a-token", 1, i * 5..i * 5 + 5);
        send_raw(&a, body, false).await.unwrap();
        sent_a.extend(spans);
        let (body, spans) =
            envoy_report(&reporter, "project-b-token", 2, 1000 + i * 5..1005 + i * 5);
        send_raw(&b, body, false).await.unwrap();
        sent_b.extend(spans);
    }
    capture.wait_spans(100, Duration::from_secs(10)).await;
    let all: Vec<Vec<u8>> = sent_a.iter().chain(&sent_b).cloned().collect();
    assert_spans_arrived_untouched(&capture, &all);
    for request in capture.requests() {
        let decoded = request.decode();
        let token = decoded.auth.unwrap().access_token;
        assert!(
            token == "project-a-token" || token == "project-b-token",
            "own token wins: {token}"
        );
        assert_eq!(request.token_header.as_deref(), Some(token.as_str()));
        let traces: HashSet<u64> = decoded
            .spans
            .iter()
            .map(|s| s.span_context.as_ref().unwrap().trace_id)
            .collect();
        let expected = if token == "project-a-token" { 1 } else { 2 };
        assert_eq!(
            traces,
            HashSet::from([expected]),
            "a request never mixes tokens"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ingest_and_tls_upstream_with_the_dev_ca() {
    let certs = TlsIngest::new();
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("200ms")
        .args(&certs.args())
        .upstream_tls(&certs)
        .start()
        .await;
    let tls = cubesat.tls.expect("TLS start line");
    let channel = tls_channel(tls, &certs.ca).await;
    let reporter = envoy_reporter("details.default", 5);
    let mut sent = Vec::new();
    for i in 0..5u64 {
        let (body, spans) = envoy_report(&reporter, "", 3, i * 4..i * 4 + 4);
        send_raw(&channel, body, false)
            .await
            .expect("report over TLS");
        sent.extend(spans);
    }
    capture
        .wait_spans(sent.len(), Duration::from_secs(10))
        .await;
    assert_spans_arrived_untouched(&capture, &sent);
    for request in capture.requests() {
        assert_eq!(request.token_header.as_deref(), Some(TOKEN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reports_get_the_right_status_while_good_clients_are_served() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("200ms")
        .start()
        .await;
    let ingest = cubesat.ingest;

    let good = tokio::spawn(async move {
        let channel = envoy_channel(ingest).await;
        let reporter = envoy_reporter("ratings.default", 77);
        let mut sent = Vec::new();
        for i in 0..30u64 {
            let (body, spans) = envoy_report(&reporter, "", 11, i * 3..i * 3 + 3);
            send_raw(&channel, body, false)
                .await
                .expect("good client is served");
            sent.extend(spans);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });

    let bad = envoy_channel(cubesat.ingest).await;
    let (valid, _) = envoy_report(&envoy_reporter("bad.default", 1), "", 1, 0..3);
    let truncated = valid.slice(..valid.len() - 7);
    let garbage = Bytes::from_static(&[0x1a, 0x05, 0x0a, 0x09, 0x01, 0x02, 0x03]);
    let wrong_type = Bytes::from_static(&[0x18, 0x01]); // spans as a varint
    for body in [truncated, garbage, wrong_type] {
        let status = send_raw(&bad, body, false).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("malformed"),
            "message says why: {}",
            status.message()
        );
    }
    let oversized = Bytes::from(vec![0u8; 17 << 20]);
    let status = send_raw(&bad, oversized, false).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    let sent = good.await.unwrap();
    capture
        .wait_spans(sent.len(), Duration::from_secs(10))
        .await;
    assert_spans_arrived_untouched(&capture, &sent);
    assert_eq!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"malformed\"}")
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_outage_loses_nothing_and_readiness_follows_it() {
    let (capture, upstream, cubesat) = ServeToCapture::new().token(TOKEN).start().await;
    let addr = upstream.addr;

    upstream.stop().await;
    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("reviews.default", 3);
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let (body, spans) = envoy_report(&reporter, "", 21, i * 10..i * 10 + 10);
        send_raw(&channel, body, false)
            .await
            .expect("buffered while the upstream is down");
        sent.extend(spans);
    }
    cubesat.wait_ready(503, Duration::from_secs(10)).await;
    let (_, body) = cubesat.admin_get("/_ready").await;
    assert!(body.contains("upstream"), "says why: {body}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(capture.spans().is_empty());

    let _back = capture.serve(&addr.to_string(), None).await;
    capture
        .wait_spans(sent.len(), Duration::from_secs(20))
        .await;
    assert_spans_arrived_untouched(&capture, &sent);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    let forwarded = cubesat
        .wait_metric(
            "cubesat_spans_forwarded_total",
            100.0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(forwarded, 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_buffered_spans_then_exits_zero() {
    let (capture, _upstream, mut cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("1h")
        .args(&["--batch-spans", "100000"])
        .start()
        .await;
    let channel = envoy_channel(cubesat.ingest).await;
    let mut sent = Vec::new();
    for i in 0..5u64 {
        let (body, spans) = envoy_report(
            &envoy_reporter("productpage.default", 8),
            "",
            4,
            i * 6..i * 6 + 6,
        );
        send_raw(&channel, body, false).await.unwrap();
        sent.extend(spans);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        capture.spans().is_empty(),
        "still buffered: the batch timeout is an hour"
    );
    drop(channel);
    let code = tokio::task::spawn_blocking(move || cubesat.terminate(Duration::from_secs(15)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
    assert_spans_arrived_untouched(&capture, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_answers_unavailable_and_counts_the_drop() {
    // The upstream refuses to take anything, so the buffer fills and stays full.
    let (_capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("50ms")
        .args(&[
            "--buffer-bytes",
            "64KiB",
            "--max-message-bytes",
            "32KiB",
            "--batch-bytes",
            "16KiB",
        ])
        .answer(Answer::Fail(tonic::Code::Unavailable))
        .no_ready_wait()
        .start()
        .await;
    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("reviews.default", 3);
    let mut refused = None;
    for i in 0..200u64 {
        let (body, _) = envoy_report(&reporter, "", 1, i * 10..i * 10 + 10);
        if let Err(status) = send_raw(&channel, body, false).await {
            refused = Some((i, status));
            break;
        }
    }
    let (_, status) = refused.expect("a 64 KiB buffer fills up");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("buffer full"), "{status:?}");
    // Refused from its length prefix, before it was read: counted as a report refused for
    // room (its spans, never scanned, stay with the client, which retries).
    assert!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"budget\"}")
            .await
            >= 1.0
    );
    let (code, body) = cubesat.admin_get("/_ready").await;
    assert_eq!(code, 503, "not ready when full: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_refusing_a_batch_drops_it_counted_without_retry() {
    let (_capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("50ms")
        .answer(Answer::Fail(tonic::Code::Unauthenticated))
        .no_ready_wait()
        .start()
        .await;
    let channel = envoy_channel(cubesat.ingest).await;
    let (body, _) = envoy_report(&envoy_reporter("reviews.default", 3), "", 1, 0..7);
    send_raw(&channel, body, false).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cubesat
        .metric("cubesat_spans_dropped_total{reason=\"upstream_rejected\"}")
        .await
        < 7.0
    {
        assert!(std::time::Instant::now() < deadline, "drop not counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cubesat
            .metric("cubesat_upstream_errors_total{code=\"unauthenticated\"}")
            .await,
        1.0
    );
    assert!(!cubesat.stderr().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reported_drops_are_counted_not_forwarded() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .batch_timeout("50ms")
        .no_ready_wait()
        .start()
        .await;
    let channel = envoy_channel(cubesat.ingest).await;
    let report = pb::ReportRequest {
        reporter: Some(envoy_reporter("x", 1)),
        internal_metrics: Some(pb::InternalMetrics {
            counts: vec![pb::MetricsSample {
                name: "spans.dropped".into(),
                value: Some(pb::metrics_sample::Value::IntValue(13)),
            }],
            ..Default::default()
        }),
        spans: vec![pb::Span {
            operation_name: "op".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    send_raw(&channel, report.encode_to_vec().into(), false)
        .await
        .unwrap();
    let spans = capture.wait_spans(1, Duration::from_secs(10)).await;
    assert!(spans[0].1.decode().internal_metrics.is_none());
    assert_eq!(
        cubesat
            .metric("cubesat_client_dropped_spans_total{protocol=\"lightstep\"}")
            .await,
        13.0
    );
}
