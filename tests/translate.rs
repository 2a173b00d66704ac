//! Translation end to end (`--upstream-protocol`): real clients send in one protocol, the
//! capturing upstream must receive the faithful translation in the other, checked field by
//! field. The OpenTelemetry Python SDK (gRPC and HTTP/protobuf exporters) goes to a Lightstep
//! upstream; the Python Lightstep tracer and Envoy-shaped gRPC reports go to an OTLP upstream.

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use cubesat::proto::collector as pb;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
use prost::Message;
use serde_json::Value;

const TOKEN: &str = "translate-configured-token";

/// Runs a client script; returns the JSON array it prints.
async fn run_client(python: String, args: Vec<String>) -> Vec<Value> {
    let mut cmd = Command::new(python);
    cmd.args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE");
    run_json_client(cmd).await
}

async fn start(upstream_protocol: &str) -> (Capture, CaptureServer, Cubesat) {
    start_with(upstream_protocol, &[]).await
}

async fn start_with(upstream_protocol: &str, extra: &[&str]) -> (Capture, CaptureServer, Cubesat) {
    let mut args = vec!["--upstream-protocol", upstream_protocol];
    args.extend_from_slice(extra);
    serve_to_capture(TOKEN, &args).await
}

fn tag<'a>(tags: &'a [pb::KeyValue], key: &str) -> Option<&'a pb::key_value::Value> {
    tags.iter()
        .find(|t| t.key == key)
        .and_then(|t| t.value.as_ref())
}

fn string(value: &str) -> Option<pb::key_value::Value> {
    Some(pb::key_value::Value::StringValue(value.into()))
}

fn hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap()
}

/// What an SDK attribute (as JSON) must become as a Lightstep tag value.
fn lightstep_value(v: &Value) -> pb::key_value::Value {
    match v {
        Value::String(s) => pb::key_value::Value::StringValue(s.clone()),
        Value::Bool(b) => pb::key_value::Value::BoolValue(*b),
        Value::Number(n) if n.is_i64() => pb::key_value::Value::IntValue(n.as_i64().unwrap()),
        Value::Number(n) => pb::key_value::Value::DoubleValue(n.as_f64().unwrap()),
        other => panic!("unexpected attribute {other}"),
    }
}

async fn check_sdk_to_lightstep(protocol: &str) {
    let (capture, _upstream, cubesat) = start("lightstep").await;
    let endpoint = match protocol {
        "grpc" => format!("http://{}", cubesat.ingest),
        _ => format!("http://{}/v1/traces", cubesat.ingest),
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/otel_send.py");
    let sent = run_client(
        otel_python(),
        vec![
            script.into(),
            protocol.into(),
            endpoint,
            "sdk-project-token".into(),
        ],
    )
    .await;
    assert_eq!(sent.len(), 3);

    let received = capture.wait_spans(3, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 3, "no extra spans");
    assert!(
        capture.requests().iter().all(|c| c.path == REPORT_PATH),
        "everything left as Lightstep Report"
    );
    for expected in &sent {
        let span_id = hex_u64(expected["span_id"].as_str().unwrap());
        let (span, request) = received
            .iter()
            .find(|(s, _)| s.span_context.as_ref().unwrap().span_id == span_id)
            .unwrap_or_else(|| panic!("span {} did not arrive", expected["span_id"]));
        // The token: the SDK's own, in metadata and in the body.
        assert_eq!(request.token_header.as_deref(), Some("sdk-project-token"));
        let report = request.decode();
        assert_eq!(report.auth.unwrap().access_token, "sdk-project-token");
        // The resource became the reporter.
        let reporter = report.reporter.unwrap();
        assert_eq!(
            tag(&reporter.tags, "lightstep.component_name"),
            string("checkout").as_ref()
        );
        assert_eq!(tag(&reporter.tags, "service.name"), None);
        assert_eq!(
            tag(&reporter.tags, "deployment.environment"),
            string("test").as_ref()
        );
        assert_eq!(
            tag(&reporter.tags, "lightstep.tracer_platform"),
            string("python").as_ref()
        );
        assert_ne!(reporter.reporter_id, 0);

        // Ids: the low 64 bits, and the whole 128-bit id in `otel.trace_id`.
        let trace_hex = expected["trace_id"].as_str().unwrap();
        let context = span.span_context.as_ref().unwrap();
        assert_eq!(context.trace_id, hex_u64(&trace_hex[16..]));
        if &trace_hex[..16] != "0000000000000000" {
            assert_eq!(tag(&span.tags, "otel.trace_id"), string(trace_hex).as_ref());
        }
        assert_eq!(span.operation_name, expected["name"]);
        match expected["parent_span_id"].as_str().unwrap() {
            "" => assert!(span.references.is_empty()),
            parent => {
                assert_eq!(span.references.len(), 1);
                let reference = &span.references[0];
                assert_eq!(reference.relationship, 0, "CHILD_OF");
                let parent_context = reference.span_context.as_ref().unwrap();
                assert_eq!(parent_context.span_id, hex_u64(parent));
                assert_eq!(parent_context.trace_id, context.trace_id);
            }
        }
        let start = expected["start"].as_u64().unwrap();
        let end = expected["end"].as_u64().unwrap();
        let ts = span.start_timestamp.unwrap();
        assert_eq!(ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64, start);
        assert_eq!(span.duration_micros, (end - start) / 1000);
        // Attributes -> tags with their types.
        for (key, value) in expected["attributes"].as_object().unwrap() {
            assert_eq!(
                tag(&span.tags, key),
                Some(&lightstep_value(value)),
                "tag {key}"
            );
        }
        let kind = match expected["kind"].as_i64().unwrap() {
            1 => "internal",
            2 => "server",
            3 => "client",
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(tag(&span.tags, "span.kind"), string(kind).as_ref());
        if expected["status_code"] == 2 {
            assert_eq!(
                tag(&span.tags, "error"),
                Some(&pb::key_value::Value::BoolValue(true))
            );
            assert_eq!(
                tag(&span.tags, "otel.status_description"),
                string(expected["status_message"].as_str().unwrap()).as_ref()
            );
        } else {
            assert_eq!(tag(&span.tags, "error"), None);
        }
        assert_eq!(
            tag(&span.tags, "otel.scope.name"),
            string("cubesat-e2e").as_ref()
        );
        assert_eq!(
            tag(&span.tags, "otel.scope.version"),
            string("1.0").as_ref()
        );
        // Events -> logs, the name in field `event`.
        let events = expected["events"].as_array().unwrap();
        assert_eq!(span.logs.len(), events.len());
        for (log, event) in span.logs.iter().zip(events) {
            assert_eq!(log.fields[0].key, "event");
            assert_eq!(log.fields[0].value, string(event["name"].as_str().unwrap()));
            let ts = log.timestamp.unwrap();
            let at = ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64;
            assert!((start..=end).contains(&at), "event inside its span");
            for (key, value) in event["attributes"].as_object().unwrap() {
                assert_eq!(tag(&log.fields, key), Some(&lightstep_value(value)));
            }
            assert_eq!(
                log.fields.len(),
                1 + event["attributes"].as_object().unwrap().len()
            );
        }
    }
    assert_eq!(
        cubesat
            .metric("cubesat_spans_translated_total{from=\"otlp\",to=\"lightstep\"}")
            .await,
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc_reaches_a_lightstep_upstream_field_by_field() {
    check_sdk_to_lightstep("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_protobuf_reaches_a_lightstep_upstream_field_by_field() {
    check_sdk_to_lightstep("http").await;
}

fn attr<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    list.iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn ostr(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

fn padded(trace_id: u64) -> Vec<u8> {
    let mut id = vec![0; 8];
    id.extend_from_slice(&trace_id.to_be_bytes());
    id
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_lightstep_tracer_reaches_an_otlp_upstream_field_by_field() {
    let (capture, _upstream, cubesat) = start("otlp").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/lightstep_send.py"
    );
    let before = now_nanos();
    let sent = run_client(
        lightstep_python(),
        vec![
            script.into(),
            "http".into(),
            "127.0.0.1".into(),
            cubesat.ingest.port().to_string(),
            "tracer-token".into(),
            "none".into(),
        ],
    )
    .await;
    let after = now_nanos();
    assert_eq!(sent.len(), 2);

    let received = capture.wait_otlp_spans(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2, "no extra spans");
    assert!(
        capture.requests().iter().all(|c| c.path == EXPORT_PATH),
        "everything left as OTLP Export"
    );
    for expected in &sent {
        let id: u64 = expected["span_id"].as_str().unwrap().parse().unwrap();
        let (span, resource, request) = received
            .iter()
            .find(|(s, _, _)| s.span_id == id.to_be_bytes())
            .unwrap_or_else(|| panic!("span {id} did not arrive"));
        assert_eq!(request.token_header.as_deref(), Some("tracer-token"));
        let trace_id: u64 = expected["trace_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(span.trace_id, padded(trace_id), "W3C zero padding");
        assert_eq!(span.name, expected["name"]);
        assert!(before <= span.start_time_unix_nano && span.start_time_unix_nano <= after);
        assert!(span.start_time_unix_nano <= span.end_time_unix_nano);
        assert!(span.end_time_unix_nano <= after);
        let attrs = &resource.attributes;
        assert_eq!(attr(attrs, "service.name"), Some(&ostr("inventory")));
        assert_eq!(
            attr(attrs, "lightstep.component_name"),
            Some(&ostr("inventory"))
        );
        assert_eq!(attr(attrs, "telemetry.sdk.language"), Some(&ostr("python")));
        assert!(attr(attrs, "host.name").is_some());
        match expected["parent_span_id"].as_str() {
            None => {
                // The parent: tags, kind from `span.kind`, the log as an event.
                assert!(span.parent_span_id.is_empty());
                assert_eq!(span.kind, 2, "span.kind server");
                assert_eq!(attr(&span.attributes, "sku"), Some(&ostr("A-42")));
                // The Python tracer sends every tag value as a string.
                assert_eq!(attr(&span.attributes, "quantity"), Some(&ostr("3")));
                assert_eq!(attr(&span.attributes, "span.kind"), None);
                assert!(span.status.is_none());
                assert_eq!(span.events.len(), 1);
                let event = &span.events[0];
                assert_eq!(event.name, "cache miss");
                assert_eq!(attr(&event.attributes, "key"), Some(&ostr("stock:A-42")));
                assert!(
                    span.start_time_unix_nano <= event.time_unix_nano
                        && event.time_unix_nano <= span.end_time_unix_nano
                );
            }
            Some(parent) => {
                // The child: its CHILD_OF reference (span id only) is the parent; `error`
                // "True" is status ERROR.
                let parent: u64 = parent.parse().unwrap();
                assert_eq!(span.parent_span_id, parent.to_be_bytes());
                assert_eq!(span.kind, 0);
                assert_eq!(attr(&span.attributes, "db.type"), Some(&ostr("sql")));
                assert_eq!(attr(&span.attributes, "error"), None);
                assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
                assert!(span.events.is_empty());
            }
        }
    }
    assert_eq!(
        cubesat
            .metric("cubesat_spans_translated_total{from=\"lightstep\",to=\"otlp\"}")
            .await,
        2.0
    );
}

/// Decodes one `0x1A` span field of the harness back into a span.
fn span_of_field(field: &[u8]) -> pb::Span {
    let mut rest = &field[1..];
    let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
    assert_eq!(len, rest.len());
    pb::Span::decode(rest).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_shaped_reports_reach_an_otlp_upstream_field_by_field() {
    let (capture, _upstream, cubesat) = start("otlp").await;
    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("productpage.default", 7);
    let (body, fields) = envoy_report(&reporter, "envoy-token", 0xabc, 10..14);
    send_raw(&channel, body, true)
        .await
        .expect("Report accepted");
    // A second Envoy worker, with the body's placeholder token: the configured one goes up.
    let (body, more) = envoy_report(&reporter, "", 0xdef, 20..22);
    send_raw(&channel, body, false)
        .await
        .expect("Report accepted");

    let received = capture.wait_otlp_spans(6, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 6);
    for (field, token) in fields
        .iter()
        .map(|f| (f, "envoy-token"))
        .chain(more.iter().map(|f| (f, TOKEN)))
    {
        let sent = span_of_field(field);
        let context = sent.span_context.clone().unwrap();
        let (span, resource, request) = received
            .iter()
            .find(|(s, _, _)| s.span_id == context.span_id.to_be_bytes())
            .unwrap_or_else(|| panic!("span {} did not arrive", context.span_id));
        assert_eq!(request.token_header.as_deref(), Some(token));
        assert_eq!(span.trace_id, padded(context.trace_id));
        let parent = sent.references[0].span_context.as_ref().unwrap().span_id;
        assert_eq!(span.parent_span_id, parent.to_be_bytes());
        assert!(span.links.is_empty());
        assert_eq!(span.name, sent.operation_name);
        let ts = sent.start_timestamp.unwrap();
        let start = ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64;
        assert_eq!(span.start_time_unix_nano, start);
        assert_eq!(span.end_time_unix_nano, start + sent.duration_micros * 1000);
        assert_eq!(span.kind, 2, "span.kind server");
        assert!(span.status.is_none());
        // Every tag but span.kind is an attribute with the same string value, in order.
        let expected: Vec<(String, any_value::Value)> = sent
            .tags
            .iter()
            .filter(|t| t.key != "span.kind")
            .map(|t| match &t.value {
                Some(pb::key_value::Value::StringValue(v)) => (t.key.clone(), ostr(v)),
                other => panic!("unexpected tag value {other:?}"),
            })
            .collect();
        let got: Vec<(String, any_value::Value)> = span
            .attributes
            .iter()
            .map(|a| {
                (
                    a.key.clone(),
                    a.value.clone().and_then(|v| v.value).unwrap(),
                )
            })
            .collect();
        assert_eq!(got, expected);
        let attrs = &resource.attributes;
        assert_eq!(
            attr(attrs, "service.name"),
            Some(&ostr("productpage.default"))
        );
        assert_eq!(
            attr(attrs, "lightstep.component_name"),
            Some(&ostr("productpage.default"))
        );
        assert_eq!(
            attr(attrs, "host.name"),
            Some(&ostr("productpage-v1-6b746f74dc-9stvs"))
        );
        assert_eq!(attr(attrs, "telemetry.sdk.language"), Some(&ostr("envoy")));
        assert_eq!(attr(attrs, "telemetry.sdk.version"), Some(&ostr("0.19")));
        assert_eq!(
            attr(attrs, "lightstep.reporter_id"),
            Some(&any_value::Value::IntValue(7))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_strings_are_repaired_not_refused() {
    let (capture, _upstream, cubesat) = start("otlp").await;
    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("reviews.default", 9);
    let (body, _) = envoy_report(&reporter, "t", 0x77, 1..2);
    // `http.method` = "GET": make its "E" an invalid UTF-8 byte.
    let mut bytes = body.to_vec();
    let at = bytes.windows(3).position(|w| w == b"GET").unwrap() + 1;
    bytes[at] = 0xff;
    assert!(
        pb::ReportRequest::decode(&bytes[..]).is_err(),
        "really invalid"
    );
    send_raw(&channel, Bytes::from(bytes), false)
        .await
        .expect("a non-UTF-8 report is accepted");
    let received = capture.wait_otlp_spans(1, Duration::from_secs(10)).await;
    let span = &received[0].0;
    assert_eq!(
        attr(&span.attributes, "http.method"),
        Some(&ostr("G\u{fffd}T"))
    );
}

fn otlp_body(links: Vec<span::Link>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![7; 16],
                    span_id: vec![8; 8],
                    name: "bad link".into(),
                    links,
                    attributes: vec![KeyValue {
                        key: "k".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::BoolValue(true)),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_refused_and_other_clients_still_arrive() {
    // OTLP in, Lightstep upstream.
    let (capture, _upstream, cubesat) = start("lightstep").await;
    let mut truncated = otlp_body(Vec::new());
    truncated.truncate(truncated.len() - 3);
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        truncated,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Framing is fine, but a link id no Lightstep reference can hold: translation refuses.
    let bad_link = otlp_body(vec![span::Link {
        trace_id: vec![1; 16],
        span_id: vec![2; 3],
        ..Default::default()
    }]);
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        bad_link,
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("translate") && body.contains("link span_id"),
        "{body}"
    );
    let (status, body) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        otlp_body(Vec::new()),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let spans = capture.wait_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].0.operation_name, "bad link");
    assert_eq!(spans[0].1.token_header.as_deref(), Some(TOKEN));
    assert_eq!(
        cubesat
            .metric("cubesat_reports_rejected_total{protocol=\"otlp\",reason=\"untranslatable\"}")
            .await,
        1.0
    );

    // Lightstep in, OTLP upstream: a truncated Report is INVALID_ARGUMENT, others arrive.
    let (capture, _upstream, cubesat) = start("otlp").await;
    let channel = envoy_channel(cubesat.ingest).await;
    let reporter = envoy_reporter("details.default", 3);
    let (good, _) = envoy_report(&reporter, "t", 0x55, 1..4);
    let bad = good.slice(..good.len() - 5);
    let (a, b) = tokio::join!(
        send_raw(&channel, bad, false),
        send_raw(&channel, good, false)
    );
    let status = a.expect_err("truncated report refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(!status.message().is_empty());
    b.expect("the good report is accepted");
    let spans = capture.wait_otlp_spans(3, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpp_streaming_upload_reaches_an_otlp_upstream_while_open() {
    use std::io::{Read, Write};
    let (capture, _upstream, cubesat) = start("otlp").await;
    let header = pb::ReportRequest {
        reporter: Some(envoy_reporter("cpp-service", 5)),
        internal_metrics: Some(pb::InternalMetrics {
            counts: vec![pb::MetricsSample {
                name: "spans.dropped".into(),
                value: Some(pb::metrics_sample::Value::IntValue(4)),
            }],
            ..Default::default()
        }),
        timestamp_offset_micros: 1_000,
        ..Default::default()
    }
    .encode_to_vec();
    let fields: Vec<Vec<u8>> = (1..=4).map(|id| envoy_span_field(77, id, 0)).collect();
    let mut stream = std::net::TcpStream::connect(cubesat.ingest).unwrap();
    stream.write_all(CPP_STREAM_HEAD).unwrap();
    stream.write_all(&http_chunk(&header, false)).unwrap();
    for field in &fields[..2] {
        stream.write_all(&http_chunk(field, true)).unwrap();
    }
    // Still open: the first spans are already translated and on their way.
    capture.wait_otlp_spans(2, Duration::from_secs(10)).await;
    for field in &fields[2..] {
        stream.write_all(&http_chunk(field, true)).unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));

    let received = capture.wait_otlp_spans(4, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 4);
    for field in &fields {
        let sent = span_of_field(field);
        let id = sent.span_context.as_ref().unwrap().span_id;
        let (span, resource, request) = received
            .iter()
            .find(|(s, _, _)| s.span_id == id.to_be_bytes())
            .unwrap_or_else(|| panic!("span {id} did not arrive"));
        assert_eq!(request.token_header.as_deref(), Some(TOKEN));
        assert_eq!(span.trace_id, padded(77));
        // The C++ reference names span 0: no parent.
        assert!(span.parent_span_id.is_empty());
        // The stream's clock offset (+1 ms) is applied.
        let ts = sent.start_timestamp.unwrap();
        let start = ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64 + 1_000_000;
        assert_eq!(span.start_time_unix_nano, start);
        assert_eq!(
            attr(&resource.attributes, "service.name"),
            Some(&ostr("cpp-service"))
        );
    }
    assert_eq!(
        cubesat
            .metric("cubesat_client_dropped_spans_total{protocol=\"lightstep\"}")
            .await,
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_otlp_strings_are_repaired_not_refused() {
    let (capture, _upstream, cubesat) = start("lightstep").await;
    let mut body = otlp_body(Vec::new());
    // The span name "bad link": make its "k" an invalid UTF-8 byte.
    let at = body.windows(8).position(|w| w == b"bad link").unwrap() + 7;
    body[at] = 0xff;
    assert!(
        ExportTraceServiceRequest::decode(&body[..]).is_err(),
        "really invalid"
    );
    let (status, reply) = post(
        cubesat.ingest,
        "/v1/traces",
        "application/x-protobuf",
        body,
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let spans = capture.wait_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans[0].0.operation_name, "bad lin\u{fffd}");
}
