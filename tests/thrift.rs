//! The legacy Thrift transports end to end: hand-built Thrift JSON (nulls, numbers, gzip) on
//! `/api/v0/reports`, the real Python tracer with `use_thrift=True` on
//! `/_rpc/v1/reports/binary`, the real Node tracer with both its transports, and malformed
//! bodies refused with a message while other clients' spans still arrive.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use cubesat::proto::collector as pb;
use serde_json::Value;

const TOKEN: &str = "configured-token";
const JSON_PATH: &str = "/api/v0/reports";
const BINARY_PATH: &str = "/_rpc/v1/reports/binary";

/// A capture and a cubesat forwarding to it with a short batch timeout.
async fn start(extra: &[&str]) -> (Capture, CaptureServer, Cubesat) {
    serve_to_capture(TOKEN, extra).await
}

/// An HTTP/1.1 POST with extra headers: (status, headers, body).
async fn post_with(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Bytes) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut request = http::Request::post(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn tag<'a>(tags: &'a [pb::KeyValue], key: &str) -> Option<&'a pb::key_value::Value> {
    tags.iter()
        .find(|t| t.key == key)
        .and_then(|t| t.value.as_ref())
}

/// A tag value as text, whatever its protobuf type.
fn text(value: Option<&pb::key_value::Value>) -> Option<String> {
    use pb::key_value::Value as V;
    value.map(|v| match v {
        V::StringValue(s) | V::JsonValue(s) => s.clone(),
        V::IntValue(n) => n.to_string(),
        V::DoubleValue(d) => d.to_string(),
        V::BoolValue(b) => b.to_string(),
    })
}

fn string(s: &str) -> Option<pb::key_value::Value> {
    Some(pb::key_value::Value::StringValue(s.into()))
}

fn span_id(span: &pb::Span) -> u64 {
    span.span_context.as_ref().unwrap().span_id
}

fn find(spans: &[(pb::Span, Captured)], id: u64) -> &(pb::Span, Captured) {
    spans
        .iter()
        .find(|(s, _)| span_id(s) == id)
        .unwrap_or_else(|| panic!("span {id:x} did not arrive"))
}

fn reporter_tag(request: &Captured, key: &str) -> Option<pb::key_value::Value> {
    tag(&request.decode().reporter.unwrap().tags, key).cloned()
}

fn check_hand_built_span(spans: &[(pb::Span, Captured)], id: u64, name: &str, start: i64) {
    use pb::key_value::Value as V;
    let (span, request) = find(spans, id);
    assert_eq!(request.token_header.as_deref(), Some("json-token"));
    let decoded = request.decode();
    assert_eq!(decoded.auth.unwrap().access_token, "json-token");
    assert_eq!(decoded.reporter.as_ref().unwrap().reporter_id, 0x5eed);
    assert_eq!(
        reporter_tag(request, "lightstep.component_name"),
        string("billing")
    );
    assert_eq!(reporter_tag(request, "pid"), Some(V::IntValue(4242)));
    assert_eq!(reporter_tag(request, "debug"), string(""));

    assert_eq!(span.operation_name, name);
    assert_eq!(span.span_context.as_ref().unwrap().trace_id, 0xabc);
    let parent = span.references[0].span_context.as_ref().unwrap();
    assert_eq!(span.references[0].relationship, 0, "CHILD_OF");
    assert_eq!((parent.trace_id, parent.span_id), (0xabc, 0xbeef));
    assert!(tag(&span.tags, "parent_span_guid").is_none());
    let ts = span.start_timestamp.unwrap();
    assert_eq!(ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000, start);
    assert_eq!(span.duration_micros, 2_500);
    assert_eq!(tag(&span.tags, "retries"), Some(&V::IntValue(2)));
    assert_eq!(tag(&span.tags, "ratio"), Some(&V::DoubleValue(0.25)));
    assert_eq!(tag(&span.tags, "cached"), Some(&V::BoolValue(false)));
    assert_eq!(tag(&span.tags, "note"), string("").as_ref());
    assert_eq!(tag(&span.tags, "error"), Some(&V::BoolValue(true)));
    let log = &span.logs[0];
    let at = log.timestamp.unwrap();
    assert_eq!(
        at.seconds * 1_000_000 + i64::from(at.nanos) / 1000,
        start + 100
    );
    assert_eq!(tag(&log.fields, "event"), string("charged").as_ref());
    assert_eq!(
        tag(&log.fields, "payload"),
        Some(&V::JsonValue(r#"{"amount":12}"#.into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_built_thrift_json_plain_and_gzip_arrives_field_by_field() {
    let (capture, _upstream, cubesat) = start(&[]).await;
    let start_micros = now_micros() - 10_000;

    // Plain, with the token header in an odd case (header names match in any case).
    let before = now_micros();
    let (status, headers, body) = post_with(
        cubesat.ingest,
        JSON_PATH,
        &[
            ("content-type", "application/json"),
            ("LIGHTSTEP-access-TOKEN", "json-token"),
        ],
        thrift_json(start_micros, "1a", "charge").into_bytes(),
    )
    .await;
    let after = now_micros();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "application/json");
    let reply: Value = serde_json::from_slice(&body).expect("JSON reply");
    let receive = reply["timing"]["receive_micros"].as_i64().unwrap();
    let transmit = reply["timing"]["transmit_micros"].as_i64().unwrap();
    assert!(before - 1_000 <= receive && receive <= transmit && transmit <= after + 1_000);
    assert_eq!(reply["errors"], serde_json::json!([]));
    assert_eq!(reply["commands"], serde_json::json!([]));

    // Gzip, as the JS tracer sends by default.
    let (status, _, body) = post_with(
        cubesat.ingest,
        JSON_PATH,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("Lightstep-Access-Token", "json-token"),
        ],
        gzip(thrift_json(start_micros, "2b", "refund").as_bytes()),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["timing"]["receive_micros"].is_i64());

    let spans = capture.wait_spans(2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2);
    check_hand_built_span(&spans, 0x1a, "charge", start_micros);
    check_hand_built_span(&spans, 0x2b, "refund", start_micros);
    // Same runtime, same token: one reporter, so they may share a batch.
    assert_eq!(
        cubesat
            .metric("cubesat_client_dropped_spans_total{protocol=\"lightstep\"}")
            .await,
        6.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_thrift_gets_400_with_a_message_while_others_arrive() {
    let (capture, _upstream, cubesat) = start(&["--max-message-bytes", "64KiB"]).await;
    let addr = cubesat.ingest;
    let json = [("content-type", "application/json")];
    let binary = [("content-type", "application/x-thrift")];
    let good_json = thrift_json(now_micros(), "900d", "good json");
    let good_binary = binary_call(5, "bin-token", "b1", b"caf\xff");

    // (path, headers, body, what the error must say)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Vec<u8>, &'a str);
    let bad: Vec<Case> = vec![
        (
            JSON_PATH,
            &json,
            b"{\"span_records\": [".to_vec(),
            "invalid Thrift ReportRequest JSON",
        ),
        (
            JSON_PATH,
            &json,
            b"[1,2]".to_vec(),
            "invalid Thrift ReportRequest JSON",
        ),
        (
            JSON_PATH,
            &json,
            good_json.replace("\"900d\"", "\"not-hex\"").into_bytes(),
            "span_records[0].span_guid is not a hex guid",
        ),
        (
            JSON_PATH,
            &json,
            good_json.replace("\"900d\"", "null").into_bytes(),
            "span_records[0].span_guid is missing",
        ),
        (
            JSON_PATH,
            &json,
            good_json
                .replace(
                    "\"youngest_micros\":",
                    "\"youngest_micros\":\"later\",\"x\":",
                )
                .into_bytes(),
            "is not a 64-bit integer",
        ),
        (
            BINARY_PATH,
            &binary,
            good_binary[..good_binary.len() - 7].to_vec(),
            "invalid Thrift binary Report call",
        ),
        (
            BINARY_PATH,
            &binary,
            b"GET / HTTP/1.1".to_vec(),
            "invalid Thrift binary Report call",
        ),
    ];
    for (path, headers, body, message) in bad {
        let (status, _, reply) = post_with(addr, path, headers, body).await;
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, 400, "{path}: {reply}");
        assert!(reply.starts_with("Failed: "), "{reply}");
        assert!(reply.contains(message), "{path}: {reply} lacks {message:?}");
    }
    assert_eq!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"lightstep\",reason=\"malformed\"}")
            .await,
        7.0
    );
    // A gzip body that is not gzip, and ones past the limit (before and after inflating).
    let gz = [
        ("content-encoding", "gzip"),
        ("content-type", "application/json"),
    ];
    let (status, _, _) = post_with(addr, JSON_PATH, &gz, b"not gzip".to_vec()).await;
    assert_eq!(status, 400);
    let (status, _, reply) = post_with(addr, JSON_PATH, &gz, gzip(&vec![b' '; 1 << 20])).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&reply));
    let (status, _, _) = post_with(addr, BINARY_PATH, &binary, vec![0; 100 << 10]).await;
    assert_eq!(status, 413);

    // Well-formed reports still get in, on both routes.
    let token = [
        ("content-type", "application/json"),
        ("lightstep-access-token", "json-token"),
    ];
    let (status, _, reply) = post_with(addr, JSON_PATH, &token, good_json.into_bytes()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    let (status, headers, reply) = post_with(addr, BINARY_PATH, &binary, good_binary).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    assert_eq!(headers["content-type"], "application/x-thrift");
    // REPLY header: strict version word with type 2, the name, then the seqid.
    assert_eq!(&reply[..4], &[0x80, 0x01, 0x00, 0x02]);
    assert_eq!(&reply[8..14], b"Report");
    assert_eq!(&reply[14..18], &5i32.to_be_bytes());

    let spans = capture.wait_spans(2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2, "only the well-formed reports' spans");
    let (json_span, json_request) = find(&spans, 0x900d);
    assert_eq!(json_span.operation_name, "good json");
    assert_eq!(json_request.token_header.as_deref(), Some("json-token"));
    let (binary_span, binary_request) = find(&spans, 0xb1);
    assert_eq!(binary_span.span_context.as_ref().unwrap().trace_id, 0x77);
    assert_eq!(binary_request.token_header.as_deref(), Some("bin-token"));
    assert_eq!(
        tag(&binary_span.tags, "raw"),
        string("caf\u{fffd}").as_ref(),
        "non-UTF-8 is repaired, not refused"
    );
    assert_eq!(
        reporter_tag(binary_request, "lightstep.component_name"),
        string("binary-client")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_thrift_tracers_get_cors() {
    // Serve mode allows only the configured origins.
    let (_capture, _upstream, cubesat) =
        start(&["--cors-allowed-origins", "http://shop.example"]).await;
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let request = http::Request::options(format!("http://{}{JSON_PATH}", cubesat.ingest))
        .header("origin", "http://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,lightstep-access-token",
        )
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers().clone();
    let _ = response.into_body().collect().await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://shop.example"
    );
    let allowed = headers["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("lightstep-access-token"), "{allowed}");
}

// ---------------------------------------------------------------------------------------------
// Real tracers.

async fn check_python_thrift(tls: bool) {
    let certs = TlsIngest::new();
    let (ca, tls_args) = (&certs.ca, certs.args());
    let (capture, _upstream, cubesat) = start(if tls { &tls_args } else { &[] }).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/lightstep_send.py"
    );
    let (host, port, encryption) = if tls {
        ("localhost", cubesat.tls.unwrap().port(), "tls")
    } else {
        ("127.0.0.1", cubesat.ingest.port(), "none")
    };
    let mut cmd = Command::new(lightstep_python());
    cmd.args([
        script,
        "thrift",
        host,
        &port.to_string(),
        "tracer-token",
        encryption,
    ]);
    // Thrift's HTTP client uses Python's default TLS context, which trusts this file.
    cmd.env("SSL_CERT_FILE", ca);
    let sent = run_json_client(cmd).await;

    let received = capture.wait_spans(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    for expected in &sent {
        let id: u64 = expected["span_id"].as_str().unwrap().parse().unwrap();
        let (span, request) = find(&received, id);
        assert_eq!(request.token_header.as_deref(), Some("tracer-token"));
        assert_eq!(request.decode().auth.unwrap().access_token, "tracer-token");
        assert_eq!(
            reporter_tag(request, "lightstep.component_name"),
            string("inventory")
        );
        assert_eq!(
            reporter_tag(request, "lightstep.tracer_platform"),
            string("python")
        );
        assert_eq!(
            span.span_context.as_ref().unwrap().trace_id.to_string(),
            expected["trace_id"]
        );
        assert_eq!(span.operation_name, expected["name"]);
        assert!(span.start_timestamp.is_some());
        match expected["parent_span_id"].as_str() {
            Some(parent) => {
                assert_eq!(span.references.len(), 1);
                let reference = &span.references[0];
                assert_eq!(reference.relationship, 0, "CHILD_OF");
                let ctx = reference.span_context.as_ref().unwrap();
                assert_eq!(ctx.span_id.to_string(), parent);
                assert_eq!(ctx.trace_id, span.span_context.as_ref().unwrap().trace_id);
                assert_eq!(tag(&span.tags, "db.type").cloned(), string("sql"));
                assert_eq!(tag(&span.tags, "error").cloned(), string("True"));
                assert!(tag(&span.tags, "parent_span_guid").is_none());
            }
            None => {
                assert!(span.references.is_empty());
                assert_eq!(tag(&span.tags, "sku").cloned(), string("A-42"));
                assert_eq!(tag(&span.tags, "quantity").cloned(), string("3"));
                assert_eq!(tag(&span.tags, "span.kind").cloned(), string("server"));
                let log = &span.logs[0];
                assert!(log.timestamp.is_some());
                assert_eq!(tag(&log.fields, "event").cloned(), string("cache miss"));
                assert_eq!(tag(&log.fields, "key").cloned(), string("stock:A-42"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lightstep_tracer_over_thrift_binary_arrives_intact() {
    check_python_thrift(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lightstep_tracer_over_thrift_binary_and_tls_arrives_intact() {
    check_python_thrift(true).await;
}

fn node_modules() -> String {
    let dir = std::env::var("CUBESAT_NODE_MODULES").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/.node-tools/node_modules").into()
    });
    let ok = Command::new("node")
        .args(["-e", "require('lightstep-tracer')"])
        .env("NODE_PATH", &dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no node with lightstep-tracer in {dir}: set CUBESAT_NODE_MODULES or run scripts/test"
    );
    dir
}

async fn check_node_tracer(transport: &str) {
    let (capture, _upstream, cubesat) = start(&[]).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/lightstep_send.js"
    );
    let mut cmd = Command::new("node");
    cmd.env("NODE_PATH", node_modules()).args([
        script,
        transport,
        "127.0.0.1",
        &cubesat.ingest.port().to_string(),
        "node-token",
    ]);
    let result = run_client(cmd).await;
    assert!(
        result["clock_samples"].as_u64().unwrap() >= 1,
        "the tracer took a clock sample from the reply: {result}"
    );

    let received = capture.wait_spans(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    let hex = |v: &Value| u64::from_str_radix(v.as_str().unwrap(), 16).unwrap();
    for expected in result["spans"].as_array().unwrap() {
        let (span, request) = find(&received, hex(&expected["span_id"]));
        assert_eq!(request.token_header.as_deref(), Some("node-token"));
        assert_eq!(request.decode().auth.unwrap().access_token, "node-token");
        assert_eq!(
            reporter_tag(request, "lightstep.component_name"),
            string("storefront")
        );
        let ctx = span.span_context.as_ref().unwrap();
        assert_eq!(ctx.trace_id, hex(&expected["trace_id"]));
        assert_eq!(span.operation_name, expected["name"]);
        assert!(span.start_timestamp.is_some());
        if expected["parent_span_id"].is_null() {
            assert!(span.references.is_empty());
            assert_eq!(text(tag(&span.tags, "cart.items")).as_deref(), Some("3"));
            assert_eq!(
                text(tag(&span.tags, "span.kind")).as_deref(),
                Some("server")
            );
            let log = &span.logs[0];
            assert!(log.timestamp.is_some());
            assert_eq!(
                text(tag(&log.fields, "event")).as_deref(),
                Some("payment authorized")
            );
            assert_eq!(text(tag(&log.fields, "amount")).as_deref(), Some("42"));
        } else {
            let reference = span.references[0].span_context.as_ref().unwrap();
            assert_eq!(span.references[0].relationship, 0, "CHILD_OF");
            assert_eq!(reference.span_id, hex(&expected["parent_span_id"]));
            assert_eq!(text(tag(&span.tags, "error")).as_deref(), Some("true"));
            assert_eq!(
                text(tag(&span.tags, "card.network")).as_deref(),
                Some("visa")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_lightstep_tracer_proto_transport_arrives_intact() {
    check_node_tracer("proto").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_lightstep_tracer_thrift_transport_arrives_intact() {
    check_node_tracer("thrift").await;
}
