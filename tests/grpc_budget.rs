//! gRPC bodies and the memory budget, end to end against the real binary with a small budget
//! (`--buffer-bytes 32MiB`): a message is charged from its 5-byte length prefix before it is
//! buffered, so an oversized declaration is refused `RESOURCE_EXHAUSTED` and one that cannot
//! fit `UNAVAILABLE`, at once, without waiting for its bytes; a gzip bomb stops at
//! `--max-message-bytes`; many HTTP/2 streams of large messages on one connection stay within
//! the budget. Peak RSS (`VmHWM`) stays within the budget plus [`RSS_SLACK`], and a
//! well-behaved client beside them loses nothing.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use cubesat::proto::collector as pb;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use prost::Message;

/// What cubesat may hold beyond its budget: code, runtime, allocator, per-connection buffers.
const RSS_SLACK: u64 = 96 << 20;
const BUDGET: u64 = 32 << 20;

type Body = BoxBody<Bytes, Infallible>;

/// A raw HTTP/2 (h2c) client: one connection, bodies sent as given (no copy, no framing).
fn h2_client() -> Client<HttpConnector, Body> {
    Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// The 5-byte gRPC prefix of an uncompressed message of `len` bytes.
fn prefix(len: u32) -> Bytes {
    let mut out = vec![0u8];
    out.extend_from_slice(&len.to_be_bytes());
    out.into()
}

/// Calls `Report` with `body`; returns (grpc-status, grpc-message), from the headers of a
/// trailers-only answer or from the trailers.
async fn report_call(
    client: &Client<HttpConnector, Body>,
    addr: std::net::SocketAddr,
    body: Body,
) -> (String, String) {
    let request = http::Request::post(format!(
        "http://{addr}/lightstep.collector.CollectorService/Report"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(body)
    .unwrap();
    let response = client.request(request).await.expect("an answer");
    let status_of = |h: &http::HeaderMap| {
        h.get("grpc-status").map(|v| {
            (
                v.to_str().unwrap().to_owned(),
                h.get("grpc-message")
                    .map(|m| percent_decoded(m.as_bytes()))
                    .unwrap_or_default(),
            )
        })
    };
    if let Some(status) = status_of(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.expect("the body");
    collected
        .trailers()
        .and_then(status_of)
        .expect("grpc-status in the trailers")
}

/// `grpc-message` is percent-encoded on the wire.
fn percent_decoded(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A body that sends `first` and then stays open (nothing more) until the sender drops.
fn held_open(
    first: Bytes,
) -> (
    Body,
    tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, Infallible>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(Ok(http_body::Frame::data(first))).unwrap();
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    (body.boxed(), tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_messages_are_refused_from_their_length_prefix() {
    let (capture, _upstream, cubesat) = serve_to_capture(
        "tok",
        &["--buffer-bytes", "32MiB", "--max-message-bytes", "4MiB"],
    )
    .await;
    let client = h2_client();
    // A declared 1 GiB: refused at once, without its bytes (none are sent).
    let (body, _held) = held_open(prefix(1 << 30));
    let (status, message) = tokio::time::timeout(
        Duration::from_secs(5),
        report_call(&client, cubesat.ingest, body),
    )
    .await
    .expect("answered from the prefix");
    assert_eq!(status, "8", "RESOURCE_EXHAUSTED: {message}");
    assert!(message.contains("larger than"), "{message}");
    // Declared 3 MiB each and never sent: the declarations themselves hold the budget, so past
    // about ten of them the rest are refused UNAVAILABLE at once (no bytes were ever buffered).
    let mut holders = Vec::new();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (body, held) = held_open(prefix(3 << 20));
        holders.push(held);
        let (client, addr) = (client.clone(), cubesat.ingest);
        calls.spawn(async move { report_call(&client, addr, body).await });
    }
    let mut unavailable = 0;
    while let Ok(Some(done)) = tokio::time::timeout(Duration::from_secs(3), calls.join_next()).await
    {
        let (status, message) = done.unwrap();
        assert_eq!(status, "14", "UNAVAILABLE: {message}");
        assert!(message.contains("buffer full"), "{message}");
        unavailable += 1;
    }
    assert!(
        (4..=8).contains(&unavailable),
        "{unavailable} of 16 refused"
    );
    let in_flight = cubesat
        .metric("cubesat_buffer_part_bytes{part=\"in_flight\"}")
        .await;
    assert!(
        in_flight >= (24 << 20) as f64,
        "declarations charged: {in_flight}"
    );
    drop(holders);
    calls.shutdown().await;
    // A gzip bomb (16 MiB of zeros in a few KiB) stops at the 4 MiB limit.
    let channel = envoy_channel(cubesat.ingest).await;
    let refused = send_raw(&channel, Bytes::from(vec![0u8; 16 << 20]), true)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let too_large = cubesat
        .metric(r#"cubesat_reports_rejected_total{protocol="lightstep",reason="too_large"}"#)
        .await;
    assert!(too_large >= 2.0, "{too_large}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    well_behaved_client_loses_nothing(cubesat.ingest, &capture, 31).await;
    let peak = peak_rss(cubesat.pid());
    assert!(peak <= BUDGET + RSS_SLACK, "peak RSS {} MiB", peak >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_h2_streams_of_large_messages_stay_within_the_budget() {
    let (capture, _upstream, cubesat) = serve_to_capture(
        "tok",
        &["--buffer-bytes", "32MiB", "--max-message-bytes", "4MiB"],
    )
    .await;
    // One valid report of a little under 4 MiB (one span with a huge name), shared by every
    // stream: the client holds it once and sends slices of it.
    let report = pb::ReportRequest {
        spans: vec![pb::Span {
            span_context: Some(pb::SpanContext {
                trace_id: 32,
                span_id: 1,
                ..Default::default()
            }),
            operation_name: "x".repeat((4 << 20) - 256),
            ..Default::default()
        }],
        ..Default::default()
    };
    let message = Bytes::from(report.encode_to_vec());
    let client = h2_client();
    let mut calls = tokio::task::JoinSet::new();
    // 100 streams on one connection (its concurrent stream limit), 400 MiB declared in all.
    for _ in 0..100 {
        let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> =
            std::iter::once(prefix(message.len() as u32))
                .chain(
                    (0..message.len())
                        .step_by(64 << 10)
                        .map(|at| message.slice(at..(at + (64 << 10)).min(message.len()))),
                )
                .map(|chunk| Ok(http_body::Frame::data(chunk)))
                .collect();
        let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed();
        let (client, addr) = (client.clone(), cubesat.ingest);
        calls.spawn(async move { report_call(&client, addr, body).await });
    }
    let (mut ok, mut unavailable) = (0, 0);
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            (status, _) if status == "0" => ok += 1,
            (status, message) if status == "14" => {
                assert!(message.contains("buffer full"), "{message}");
                unavailable += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!("{ok} accepted, {unavailable} refused UNAVAILABLE");
    assert!(ok >= 1 && unavailable >= 1, "{ok} / {unavailable}");
    let peak = peak_rss(cubesat.pid());
    assert!(peak <= BUDGET + RSS_SLACK, "peak RSS {} MiB", peak >> 20);
    well_behaved_client_loses_nothing(cubesat.ingest, &capture, 33).await;
}
