//! Lightstep's HTTP transports end to end: the real Python Lightstep tracer (plain and TLS),
//! proto3 JSON in both key styles, a byte-exact replay of the C++ streaming upload (and one
//! cut off mid-chunk), CORS, and error bodies no tracer can mistake for success.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use cubesat::proto::collector as pb;
use prost::Message;
use serde_json::Value;

const TOKEN: &str = "configured-token";

async fn send_with_tracer(
    transport: &str,
    port: u16,
    token: &str,
    ca: Option<&std::path::Path>,
) -> Vec<Value> {
    let python = lightstep_python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/lightstep_send.py"
    );
    let host = if ca.is_some() {
        "localhost"
    } else {
        "127.0.0.1"
    };
    let encryption = if ca.is_some() { "tls" } else { "none" };
    let mut cmd = Command::new(python);
    cmd.args([
        script,
        transport,
        host,
        &port.to_string(),
        token,
        encryption,
    ]);
    match ca {
        // The tracer posts with `requests`, which trusts the bundle named here.
        Some(ca) => cmd.env("REQUESTS_CA_BUNDLE", ca),
        None => cmd.env_remove("REQUESTS_CA_BUNDLE"),
    };
    run_json_client(cmd).await
}

fn tag<'a>(span: &'a pb::Span, key: &str) -> Option<&'a pb::key_value::Value> {
    span.tags
        .iter()
        .find(|t| t.key == key)
        .and_then(|t| t.value.as_ref())
}

fn string(value: &str) -> Option<pb::key_value::Value> {
    Some(pb::key_value::Value::StringValue(value.into()))
}

async fn check_python_tracer(tls: bool) {
    let certs = TlsIngest::new();
    let (ca, tls_args) = (&certs.ca, certs.args());
    let (capture, _upstream, cubesat) =
        serve_to_capture(TOKEN, if tls { &tls_args } else { &[] }).await;
    let port = if tls {
        cubesat.tls.unwrap().port()
    } else {
        cubesat.ingest.port()
    };
    let sent = send_with_tracer("http", port, "tracer-token", tls.then_some(ca.as_path())).await;

    let received = capture.wait_spans(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    for expected in &sent {
        let (span, request) = received
            .iter()
            .find(|(s, _)| {
                Some(
                    s.span_context
                        .as_ref()
                        .unwrap()
                        .span_id
                        .to_string()
                        .as_str(),
                ) == expected["span_id"].as_str()
            })
            .expect("span arrived");
        assert_eq!(request.token_header.as_deref(), Some("tracer-token"));
        let decoded = request.decode();
        assert_eq!(decoded.auth.unwrap().access_token, "tracer-token");
        let reporter_tags = decoded.reporter.unwrap().tags;
        assert!(
            reporter_tags
                .iter()
                .any(|t| t.key == "lightstep.component_name" && t.value == string("inventory"))
        );
        assert_eq!(
            span.span_context.as_ref().unwrap().trace_id.to_string(),
            expected["trace_id"]
        );
        assert_eq!(span.operation_name, expected["name"]);
        match expected["parent_span_id"].as_str() {
            Some(parent) => {
                let reference = &span.references[0];
                assert_eq!(reference.relationship, 0, "CHILD_OF");
                assert_eq!(
                    reference.span_context.as_ref().unwrap().span_id.to_string(),
                    parent
                );
                assert_eq!(tag(span, "db.type").cloned(), string("sql"));
                assert_eq!(
                    tag(span, "error").cloned(),
                    string("True"),
                    "Python sends every tag as a string"
                );
            }
            None => {
                assert!(span.references.is_empty());
                assert_eq!(tag(span, "sku").cloned(), string("A-42"));
                assert_eq!(tag(span, "quantity").cloned(), string("3"));
                let log = &span.logs[0];
                let field = |k: &str| {
                    log.fields
                        .iter()
                        .find(|f| f.key == k)
                        .and_then(|f| f.value.clone())
                };
                assert_eq!(field("event"), string("cache miss"));
                assert_eq!(field("key"), string("stock:A-42"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lightstep_tracer_over_http_arrives_intact() {
    check_python_tracer(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lightstep_tracer_over_https_arrives_intact() {
    check_python_tracer(true).await;
}

/// One `0x1A` span field of the C++ tracer (fields out of numeric order).
fn cpp_span(id: u64) -> Vec<u8> {
    envoy_span_field(77, id, 0)
}

/// The first chunk of a C++ stream: reporter, auth, internal metrics with `spans.dropped`.
fn cpp_header(dropped: i64) -> Vec<u8> {
    pb::ReportRequest {
        reporter: Some(envoy_reporter("cpp-service", 5)),
        auth: Some(pb::Auth {
            access_token: String::new(),
        }),
        internal_metrics: Some(pb::InternalMetrics {
            counts: vec![pb::MetricsSample {
                name: "spans.dropped".into(),
                value: Some(pb::metrics_sample::Value::IntValue(dropped)),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpp_streaming_upload_replayed_byte_for_byte() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("50ms")
        .start()
        .await;
    let addr = cubesat.ingest;

    let spans: Vec<Vec<u8>> = (1..=6).map(cpp_span).collect();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(CPP_STREAM_HEAD).unwrap();
    stream
        .write_all(&http_chunk(&cpp_header(4), false))
        .unwrap();
    for span in &spans[..3] {
        stream.write_all(&http_chunk(span, true)).unwrap();
    }
    // The upload is still open: the first spans must already be on their way.
    capture.wait_spans(3, Duration::from_secs(10)).await;
    for span in &spans[3..] {
        stream.write_all(&http_chunk(span, true)).unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .read_to_end(&mut reply)
        .expect("cubesat closes after answering");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );

    capture.wait_spans(6, Duration::from_secs(10)).await;
    let requests = capture.requests();
    for span in &spans {
        let found: usize = requests.iter().map(|r| occurrences(&r.raw, span)).sum();
        assert_eq!(found, 1, "span bytes arrive once, untouched");
    }
    for request in requests {
        assert_eq!(
            request.token_header.as_deref(),
            Some(TOKEN),
            "no token in the stream: configured one"
        );
        assert!(request.decode().internal_metrics.is_none());
    }
    assert_eq!(
        cubesat
            .metric("cubesat_client_dropped_spans_total{protocol=\"lightstep\"}")
            .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_off_mid_chunk_keeps_its_complete_spans() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("50ms")
        .start()
        .await;

    let mut stream = TcpStream::connect(cubesat.ingest).unwrap();
    stream.write_all(CPP_STREAM_HEAD).unwrap();
    stream
        .write_all(&http_chunk(&cpp_header(0), false))
        .unwrap();
    stream.write_all(&http_chunk(&cpp_span(1), true)).unwrap();
    stream.write_all(&http_chunk(&cpp_span(2), true)).unwrap();
    let third = http_chunk(&cpp_span(3), true);
    stream.write_all(&third[..third.len() / 2]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(stream);

    let spans = capture.wait_spans(2, Duration::from_secs(10)).await;
    let ids: Vec<u64> = spans
        .iter()
        .map(|(s, _)| s.span_context.as_ref().unwrap().span_id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while cubesat
        .metric("cubesat_spans_dropped_total{reason=\"truncated\"}")
        .await
        != 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "partial span counted as dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_reports_in_both_key_styles_and_a_json_reply() {
    let (capture, _upstream, cubesat) = ServeToCapture::new()
        .token(TOKEN)
        .batch_timeout("50ms")
        .start()
        .await;
    let camel = r#"{"reporter":{"reporterId":"1","tags":[{"key":"lightstep.component_name","stringValue":"csharp"}]},
        "auth":{"accessToken":"json-token"},
        "spans":[{"spanContext":{"traceId":"12","spanId":"34"},"operationName":"camel","durationMicros":"10",
        "startTimestamp":"2026-11-25T10:00:00Z"}]}"#;
    let snake = r#"{"reporter":{"reporter_id":1,"tags":[{"key":"lightstep.component_name","string_value":"csharp"}]},
        "auth":{"access_token":"json-token"},
        "spans":[{"span_context":{"trace_id":12,"span_id":35},"operation_name":"snake","duration_micros":10}]}"#;
    for body in [camel, snake] {
        let (status, reply) = post(
            cubesat.ingest,
            "/api/v2/reports",
            "application/json",
            body.as_bytes().to_vec(),
            None,
        )
        .await;
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).expect("JSON reply to a JSON request");
        assert!(
            reply["receiveTimestamp"].is_string() && reply["transmitTimestamp"].is_string(),
            "{reply}"
        );
        assert!(reply.get("errors").is_none());
    }
    let spans = capture.wait_spans(2, Duration::from_secs(10)).await;
    let names: Vec<&str> = spans
        .iter()
        .map(|(s, _)| s.operation_name.as_str())
        .collect();
    assert!(
        names.contains(&"camel") && names.contains(&"snake"),
        "{names:?}"
    );
    for (_, request) in &spans {
        assert_eq!(request.token_header.as_deref(), Some("json-token"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_never_parse_as_a_report_response() {
    // A small limit, and a body just past it: cubesat drains up to the limit (for at most a
    // second) so the client reads the 413; what is left over fits in the socket's buffers.
    let cubesat = Cubesat::serve(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--batch-timeout",
        "50ms",
        "--max-message-bytes",
        "1MiB",
    ]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/octet-stream", vec![0x1a, 0x09, 0x01], 400),
        ("application/json", b"{\"spans\": 7}".to_vec(), 400),
        (
            "application/octet-stream",
            vec![0u8; (1 << 20) + (64 << 10)],
            413,
        ),
    ];
    for (content_type, body, want) in cases {
        let (status, text) =
            post(cubesat.ingest, "/api/v2/reports", content_type, body, None).await;
        assert_eq!(status, want, "{text}");
        assert!(text.starts_with("Failed: "), "{text}");
        assert!(
            pb::ReportResponse::decode(text.as_bytes()).is_err(),
            "the Python tracer must not read success"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_tracers_get_cors() {
    // Serve mode allows only the configured origins (tests/connections.rs: no others).
    let cubesat = Cubesat::serve(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--cors-allowed-origins",
        "https://other.example,http://app.example",
    ]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for path in ["/api/v2/reports", "/v1/traces"] {
        let request = http::Request::options(format!("http://{}{path}", cubesat.ingest))
            .header("origin", "http://app.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,lightstep-access-token",
            )
            .body(Default::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let headers = response.headers();
        assert_eq!(headers["access-control-allow-origin"], "http://app.example");
        let allowed = headers["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        assert!(allowed.contains("lightstep-access-token"), "{allowed}");
    }
}
