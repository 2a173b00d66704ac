//! Seed corpora for the fuzz targets in `fuzz/` (run by `scripts/fuzz`), built from the same
//! fixtures the end-to-end tests send: Envoy-shaped reports, the Thrift calls of the legacy
//! transports, their proto3 JSON and OTLP twins, config files. Each seed is written to
//! `target/tmp/fuzz-seeds/<target>/` and checked to be accepted by the parser it seeds, so the
//! fuzzer starts from inputs that reach deep into it rather than from refusals.

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use cubesat::config::{Config, Flags, Mode};
use cubesat::proto::collector as pb;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message;

/// Where the seeds of `target` go (emptied first: seeds follow the fixtures).
fn seed_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-seeds")
        .join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_seeds(target: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = seed_dir(target);
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// An Envoy-shaped report with three spans and the client's own drop count.
fn envoy_report_with_metrics() -> Vec<u8> {
    let (body, _) = envoy_report(&envoy_reporter("productpage.default", 7), "tok", 0x77, 1..4);
    let mut bytes = body.to_vec();
    pb::ReportRequest {
        timestamp_offset_micros: -42,
        internal_metrics: Some(pb::InternalMetrics {
            counts: vec![pb::MetricsSample {
                name: "spans.dropped".into(),
                value: Some(pb::metrics_sample::Value::IntValue(5)),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode(&mut bytes)
    .unwrap();
    bytes
}

/// The same report with the "E" of `http.method` = "GET" made an invalid UTF-8 byte.
fn non_utf8(report: &[u8]) -> Vec<u8> {
    let mut bytes = report.to_vec();
    let at = bytes.windows(3).position(|w| w == b"GET").unwrap() + 1;
    bytes[at] = 0xff;
    bytes
}

fn lightstep_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (one, _) = envoy_report(&envoy_reporter("reviews.default", 9), "t", 0x99, 1..2);
    vec![
        ("envoy-report", envoy_report_with_metrics()),
        ("envoy-one-span", one.to_vec()),
        (
            "reporter-only",
            pb::ReportRequest {
                reporter: Some(envoy_reporter("ratings.default", 3)),
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        ("non-utf8", non_utf8(&envoy_report_with_metrics())),
    ]
}

fn str_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..Default::default()
    }
}

/// An export using what the Lightstep translation reads: resource and scope, events, links,
/// status, and structured attribute values.
fn rich_export() -> ExportTraceServiceRequest {
    let nested = AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList {
            values: vec![
                kv(
                    "n",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(3)),
                    }),
                ),
                kv(
                    "list",
                    Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![
                                str_value("a").unwrap(),
                                AnyValue {
                                    value: Some(any_value::Value::DoubleValue(0.5)),
                                },
                                AnyValue {
                                    value: Some(any_value::Value::BytesValue(vec![1, 2])),
                                },
                            ],
                        })),
                    }),
                ),
            ],
        })),
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", str_value("checkout"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "io.opentelemetry.http".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans: vec![
                    Span {
                        trace_id: vec![7; 16],
                        span_id: vec![8; 8],
                        parent_span_id: vec![9; 8],
                        name: "GET /cart".into(),
                        kind: span::SpanKind::Server as i32,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_250_000_000,
                        attributes: vec![
                            kv("http.method", str_value("GET")),
                            kv("cart", Some(nested)),
                            kv(
                                "ok",
                                Some(AnyValue {
                                    value: Some(any_value::Value::BoolValue(true)),
                                }),
                            ),
                        ],
                        events: vec![span::Event {
                            time_unix_nano: 1_700_000_000_100_000_000,
                            name: "cache miss".into(),
                            attributes: vec![kv("key", str_value("cart:42"))],
                            ..Default::default()
                        }],
                        links: vec![span::Link {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        }],
                        status: Some(Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        ..Default::default()
                    },
                    Span {
                        trace_id: vec![7; 16],
                        span_id: vec![9; 8],
                        name: "root".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn otlp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let envoy = pb::ReportRequest::decode(&envoy_report_with_metrics()[..]).unwrap();
    let translated = cubesat::translate::report_to_export(&envoy).encode_to_vec();
    let rich = rich_export().encode_to_vec();
    let bad = {
        let mut bytes = rich.clone();
        let at = bytes.windows(4).position(|w| w == b"cart").unwrap() + 1;
        bytes[at] = 0xff;
        bytes
    };
    vec![
        ("translated-envoy", translated),
        ("rich", rich),
        ("non-utf8", bad),
    ]
}

#[test]
fn lightstep_scanner_seeds() {
    let seeds = lightstep_seeds();
    for (name, bytes) in &seeds {
        let scan = cubesat::wire::report::scan_report(&Bytes::from(bytes.clone()), usize::MAX)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if *name != "reporter-only" {
            assert!(scan.spans.count > 0, "{name}");
        }
    }
    write_seeds("lightstep_scan", &seeds);
}

#[test]
fn otlp_scanner_seeds() {
    let seeds = otlp_seeds();
    for (name, bytes) in &seeds {
        let spans = cubesat::wire::otlp::scan_export(&Bytes::from(bytes.clone()), usize::MAX)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(spans.count > 0, "{name}");
    }
    write_seeds("otlp_scan", &seeds);
}

#[test]
fn cpp_stream_seeds() {
    // Byte 0: chunk length (0 = one chunk); byte 1: cut-off flag; then the streamed report
    // (the C++ tracer writes reporter, auth and metrics first, then one span per chunk).
    let report = envoy_report_with_metrics();
    cubesat::wire::report::scan_report(&Bytes::from(report.clone()), usize::MAX).unwrap();
    let framed = |chunk: u8, flags: u8| [&[chunk, flags][..], &report].concat();
    write_seeds(
        "cpp_stream",
        &[
            ("one-chunk", framed(0, 0)),
            ("small-chunks", framed(7, 0)),
            ("byte-chunks", framed(1, 0)),
            ("cut-off", framed(64, 1)),
        ],
    );
}

#[test]
fn thrift_binary_seeds() {
    let seeds = [
        ("call", binary_call(5, "bin-token", "b1", b"caf\xff")),
        (
            "call-long-guid",
            binary_call(1, "", "00000000000000000000000000000abc", b""),
        ),
    ];
    for (name, bytes) in &seeds {
        cubesat::ingest::parse_thrift_binary(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("thrift_binary", &seeds);
}

#[test]
fn thrift_json_seeds() {
    let seeds = [
        (
            "ruby",
            thrift_json(now_micros(), "1a", "charge").into_bytes(),
        ),
        ("empty", b"{}".to_vec()),
    ];
    for (name, bytes) in &seeds {
        cubesat::ingest::parse_thrift_json(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("thrift_json", &seeds);
}

#[test]
fn lightstep_json_seeds() {
    use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
    let pool = DescriptorPool::decode(cubesat::proto::COLLECTOR_DESCRIPTOR_SET).unwrap();
    let descriptor = pool
        .get_message_by_name("lightstep.collector.ReportRequest")
        .unwrap();
    let message = DynamicMessage::decode(descriptor, &envoy_report_with_metrics()[..]).unwrap();
    let json = |options: &SerializeOptions| {
        let mut out = serde_json::Serializer::new(Vec::new());
        message.serialize_with_options(&mut out, options).unwrap();
        out.into_inner()
    };
    let seeds = [
        ("camel-case", json(&SerializeOptions::new())),
        (
            "snake-case",
            json(&SerializeOptions::new().use_proto_field_name(true)),
        ),
    ];
    for (name, bytes) in &seeds {
        cubesat::ingest::parse_lightstep_json(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("lightstep_json", &seeds);
}

#[test]
fn otlp_json_seeds() {
    // The export as the OTLP/JSON encoding spells it (opentelemetry-proto's serde: hex ids,
    // camelCase), plus enum names and a minimal export.
    let rich = serde_json::to_vec(&rich_export()).unwrap();
    let seeds = [
        ("rich", rich),
        (
            "enum-names",
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"n","kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#.to_vec(),
        ),
        ("empty", b"{}".to_vec()),
    ];
    for (name, bytes) in &seeds {
        cubesat::ingest::parse_otlp_json(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("otlp_json", &seeds);
}

#[test]
fn lenient_decode_seeds() {
    let reports = lightstep_seeds();
    for (name, bytes) in &reports {
        cubesat::translate::report_bytes_to_export(bytes, usize::MAX)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("lenient_report", &reports);
    let exports = otlp_seeds();
    for (name, bytes) in &exports {
        cubesat::translate::export_bytes_to_reports(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("lenient_export", &exports);
}

#[test]
fn config_file_seeds() {
    // Real certificates, so that the TLS keys reach the PEM parsers.
    let certs = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-seeds/certs");
    std::fs::create_dir_all(&certs).unwrap();
    cubesat::tls::generate_dev_certs(&certs, &["localhost".to_owned()]).unwrap();
    let path = |name: &str| certs.join(name).display().to_string();
    let full = format!(
        r#"listen = "127.0.0.1:8383"
admin-listen = "[::1]:8180"
tls-listen = "0.0.0.0:9393"
tls-cert = "{cert}"
tls-key = "{key}"
upstream = "https://ingest.example.com:443"
upstream-ca = "{ca}"
upstream-protocol = "otlp"
access-token = "project-token"
force-access-token = true
log-level = "info,cubesat=debug"
buffer-bytes = "512 MiB"
batch-spans = 2048
batch-bytes = "1 MiB"
batch-timeout = "250ms"
batch-workers = 2
max-message-bytes = "4 MiB"
max-connections = 500
upstream-concurrency = 4
upstream-timeout = "5s"
retry-max-elapsed = "2m"
drain-timeout = "15s"
"#,
        cert = path("server.pem"),
        key = path("server-key.pem"),
        ca = path("cacert.pem"),
    );
    let dev =
        "listen = \"127.0.0.1:8360\"\nstore-bytes = \"8 MiB\"\nupstream-protocol = \"auto\"\n";
    let seeds = [
        ("serve-full", full.into_bytes()),
        ("dev", dev.as_bytes().to_vec()),
    ];
    let modes = [Mode::Serve, Mode::Dev];
    for ((name, text), mode) in seeds.iter().zip(modes) {
        let flags: Flags = toml::from_str(std::str::from_utf8(text).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        Config::load(mode, flags).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    write_seeds("config_toml", &seeds);
}
