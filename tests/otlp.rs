//! OTLP end to end: the real OpenTelemetry Python SDK (gRPC and HTTP/protobuf exporters,
//! installed by `scripts/test`) sends through cubesat; the capturing upstream must receive
//! each span with the same ids, names, attributes, events, kind, status, resource and token.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

const TOKEN: &str = "otlp-configured-token";

/// Runs the SDK client; returns the spans it says it sent.
async fn send_with_sdk(protocol: &str, endpoint: String, token: &str) -> Vec<Value> {
    send_with_sdk_tls(protocol, endpoint, token, None).await
}

/// Runs the SDK client, trusting `ca` for an https endpoint.
async fn send_with_sdk_tls(
    protocol: &str,
    endpoint: String,
    token: &str,
    ca: Option<&std::path::Path>,
) -> Vec<Value> {
    let python = otel_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otel_send.py");
    let mut args = vec![
        script.to_owned(),
        protocol.to_owned(),
        endpoint,
        token.to_owned(),
    ];
    args.extend(ca.map(|p| p.display().to_string()));
    // `requests` lets these override the exporter's own CA file; the SDK must use ours.
    let mut cmd = Command::new(python);
    cmd.args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    run_json_client(cmd).await
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The attribute list as JSON values, the way the SDK printed them.
fn attributes(list: &[KeyValue]) -> serde_json::Map<String, Value> {
    list.iter()
        .map(|kv| (kv.key.clone(), any(kv.value.as_ref())))
        .collect()
}

fn any(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Value::from(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(*d),
        Some(any_value::Value::BoolValue(b)) => Value::from(*b),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

async fn check_sdk_spans_arrive(protocol: &str) {
    let (capture, _upstream, cubesat) = ServeToCapture::new().token(TOKEN).start().await;
    let endpoint = match protocol {
        "grpc" => format!("http://{}", cubesat.ingest),
        _ => format!("http://{}/v1/traces", cubesat.ingest),
    };
    // The SDK brings its own real token: it must win over the configured one.
    let sent = send_with_sdk(protocol, endpoint, "sdk-project-token").await;
    assert_eq!(sent.len(), 3);

    let received = capture.wait_otlp_spans(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3, "no extra spans");
    for expected in &sent {
        let (span, resource, request) = received
            .iter()
            .find(|(s, _, _)| hex(&s.span_id) == expected["span_id"])
            .unwrap_or_else(|| panic!("span {} did not arrive", expected["span_id"]));
        assert_eq!(request.token_header.as_deref(), Some("sdk-project-token"));
        assert_eq!(hex(&span.trace_id), expected["trace_id"]);
        assert_eq!(hex(&span.parent_span_id), expected["parent_span_id"]);
        assert_eq!(span.name, expected["name"]);
        assert_eq!(span.kind, expected["kind"].as_i64().unwrap() as i32);
        assert_eq!(
            span.start_time_unix_nano,
            expected["start"].as_u64().unwrap()
        );
        assert_eq!(span.end_time_unix_nano, expected["end"].as_u64().unwrap());
        let status = span.status.clone().unwrap_or_default();
        assert_eq!(
            status.code,
            expected["status_code"].as_i64().unwrap() as i32
        );
        assert_eq!(status.message, expected["status_message"]);
        assert_eq!(
            Value::Object(attributes(&span.attributes)),
            expected["attributes"]
        );
        let events: Vec<Value> = span
            .events
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "attributes": attributes(&e.attributes)}))
            .collect();
        assert_eq!(Value::from(events), expected["events"]);
        let resource = attributes(&resource.attributes);
        assert_eq!(resource["service.name"], "checkout");
        assert_eq!(resource["deployment.environment"], "test");
        assert_eq!(resource["telemetry.sdk.language"], "python");
    }
    assert_eq!(
        cubesat
            .metric("cubesat_spans_received_total{protocol=\"otlp\"}")
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc_arrives_field_by_field() {
    check_sdk_spans_arrive("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_protobuf_arrives_field_by_field() {
    check_sdk_spans_arrive("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_without_a_token_gets_the_configured_one_and_json_works() {
    let (capture, _upstream, cubesat) = ServeToCapture::new().token(TOKEN).start().await;
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
        "scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
        "name":"add item","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1700000000000000000",
        "endTimeUnixNano":"1700000000500000000","status":{"code":"STATUS_CODE_OK"}}]}]}]}"#;
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/json",
        json.as_bytes().to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "{}");
    let spans = capture.wait_otlp_spans(1, Duration::from_secs(10)).await;
    let (span, resource, request) = &spans[0];
    assert_eq!(request.token_header.as_deref(), Some(TOKEN));
    assert_eq!(
        (
            span.name.as_str(),
            span.kind,
            span.status.as_ref().unwrap().code
        ),
        ("add item", 3, 1)
    );
    assert_eq!(hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(attributes(&resource.attributes)["service.name"], "cart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_otlp_is_refused_with_a_reason_while_others_arrive() {
    let (capture, _upstream, cubesat) = ServeToCapture::new().token(TOKEN).start().await;
    let ingest = cubesat.ingest;
    let good = tokio::spawn(async move {
        send_with_sdk("grpc", format!("http://{ingest}"), "good-token").await
    });

    let bad_json =
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex"}]}]}]}"#.to_vec();
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/json",
        bad_json,
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid OTLP JSON"), "{body}");

    // A trace id of 8 bytes: framing is fine, the id is not.
    let short_id = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![1; 8],
                    span_id: vec![2; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        short_id,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("trace_id"), "names the field: {body:?}");

    let truncated = vec![0x0a, 0x20, 0x12, 0x03];
    let (status, _) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        truncated,
        None,
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "text/plain",
        b"hi".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 415, "{body}");

    let too_big = vec![0u8; 17 << 20];
    let (status, _) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        too_big,
        None,
    )
    .await;
    assert_eq!(status, 413);

    let (status, body) = post(
        cubesat.ingest,
        "/nope",
        "application/json",
        b"{}".to_vec(),
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let sent = good.await.unwrap();
    let received = capture
        .wait_otlp_spans(sent.len(), Duration::from_secs(10))
        .await;
    assert_eq!(received.len(), sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_otlp_http_is_accepted() {
    use std::io::Write;
    let (capture, _upstream, cubesat) = ServeToCapture::new().no_ready_wait().start().await;
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"zipped","kind":2}]}]}]}"#;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json).unwrap();
    let (status, body) = post(
        cubesat.ingest,
        "/traces/otlp/v0.9",
        "application/json",
        gz.finish().unwrap(),
        Some("gzip"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let spans = capture.wait_otlp_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans[0].0.name, "zipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_port_serves_grpc_over_h2_and_otlp_http_over_http1() {
    let certs = TlsIngest::new();
    let (capture, _upstream, cubesat) = ServeToCapture::new().args(&certs.args()).start().await;
    let port = cubesat.tls.unwrap().port();
    let grpc = send_with_sdk_tls(
        "grpc",
        format!("https://localhost:{port}"),
        "tls-grpc",
        Some(&certs.ca),
    )
    .await;
    let http = send_with_sdk_tls(
        "http",
        format!("https://localhost:{port}/v1/traces"),
        "tls-http",
        Some(&certs.ca),
    )
    .await;
    let received = capture
        .wait_otlp_spans(grpc.len() + http.len(), Duration::from_secs(10))
        .await;
    for (sent, token) in [(grpc, "tls-grpc"), (http, "tls-http")] {
        for span in sent {
            let (_, _, request) = received
                .iter()
                .find(|(s, _, _)| hex(&s.span_id) == span["span_id"])
                .expect("span arrived");
            assert_eq!(request.token_header.as_deref(), Some(token));
        }
    }
}
