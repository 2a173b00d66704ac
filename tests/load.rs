//! The load generator end to end: `cubesat-load`'s generator -> the real `cubesat serve` ->
//! its counting upstream, on 127.0.0.1, for a bounded run per protocol. Every span the
//! generator had accepted must reach the sink, and nothing may be refused.

mod common;

use std::time::{Duration, Instant};

use common::Cubesat;
use cubesat_load::body::{BodySpec, Protocol};
use cubesat_load::run::{LoadConfig, Stop};
use cubesat_load::sink::{Sink, Stats};

fn config(target: String, protocol: Protocol, gzip: bool) -> LoadConfig {
    LoadConfig {
        target,
        body: BodySpec {
            protocol,
            spans: 25,
            tags: 10,
            reporters: 7,
            token: Some("load-token".into()),
            gzip,
        },
        concurrency: 4,
        connections: 2,
        stop: Stop::Requests(60),
        rate: None,
        ca: None,
        timeout: Duration::from_secs(10),
        progress: None,
    }
}

/// Waits until the sink has counted `spans` spans, then returns its counts.
async fn wait_spans(sink: &Sink, spans: u64) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = sink.counts.snapshot();
        if stats.spans >= spans || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_span_reaches_the_sink_through_cubesat() {
    let sink = Sink::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let upstream = format!("http://{}", sink.addr);
    let cubesat = Cubesat::serve(&["--upstream", &upstream, "--batch-timeout", "50ms"]);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;

    let mut expected = 0;
    for (protocol, gzip) in [
        (Protocol::LightstepGrpc, false),
        (Protocol::OtlpGrpc, true),
        (Protocol::OtlpHttp, false),
        (Protocol::LightstepHttp, true),
    ] {
        let summary = cubesat_load::run::run(config(cubesat.ingest.to_string(), protocol, gzip))
            .await
            .unwrap();
        assert_eq!(summary.count, 60, "{protocol:?}: {:?}", summary.statuses);
        assert_eq!(summary.ok, 60, "{protocol:?}: {:?}", summary.statuses);
        assert_eq!(summary.refused, 0);
        assert_eq!(summary.spans_ok, 60 * 25);
        expected += summary.spans_ok;
        let stats = wait_spans(&sink, expected).await;
        assert_eq!(stats.spans, expected, "{protocol:?}: sent == delivered");
        assert_eq!(stats.invalid, 0);
    }
    let stats = sink.counts.snapshot();
    assert_eq!(stats.lightstep_spans, 2 * 60 * 25);
    assert_eq!(stats.otlp_spans, 2 * 60 * 25);
    // Seven reporters per protocol: batches never mix reporters, so at least seven upstream
    // Lightstep requests; far fewer than the 120 Lightstep requests sent.
    assert!(stats.requests < 240, "cubesat batched: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_direct_to_the_sink_keeps_the_rate_and_counts_match() {
    let sink = Sink::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let mut config = config(sink.addr.to_string(), Protocol::OtlpGrpc, false);
    config.rate = Some(100.0);
    config.stop = Stop::Duration(Duration::from_millis(500));
    let summary = cubesat_load::run::run(config).await.unwrap();
    // Requests due at 0, 10, ..., 490 ms: exactly 50, whatever the latency.
    assert_eq!(summary.count, 50, "{:?}", summary.statuses);
    assert_eq!(summary.ok, 50);
    let stats = wait_spans(&sink, 50 * 25).await;
    assert_eq!(stats.spans, 50 * 25);
    assert_eq!(stats.requests, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_targets_with_a_ca_file_reach_the_sink_for_grpc_and_http() {
    let sink = Sink::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let upstream = format!("http://{}", sink.addr);
    let tls = common::TlsIngest::new();
    let mut args = vec!["--upstream", &upstream, "--batch-timeout", "50ms"];
    args.extend_from_slice(&tls.args());
    let cubesat = Cubesat::serve(&args);
    cubesat.wait_ready(200, Duration::from_secs(10)).await;
    let port = cubesat.tls.unwrap().port();

    let mut expected = 0;
    for protocol in [Protocol::OtlpGrpc, Protocol::LightstepHttp] {
        let mut config = config(format!("https://localhost:{port}"), protocol, false);
        config.ca = Some(tls.ca.clone());
        let summary = cubesat_load::run::run(config).await.unwrap();
        assert_eq!(summary.ok, 60, "{protocol:?}: {:?}", summary.statuses);
        expected += summary.spans_ok;
        assert_eq!(wait_spans(&sink, expected).await.spans, expected);
    }
    // Without the CA the run does not start: the handshake fails on the first connection.
    let error = cubesat_load::run::run(config(
        format!("https://localhost:{port}"),
        Protocol::OtlpGrpc,
        false,
    ))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("--cacert"), "{error}");
}
