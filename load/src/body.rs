//! Request bodies shaped like what Envoy sidecars send, encoded once before a run.
//!
//! Envoy's Lightstep tracer sends a `ReportRequest` (reporter tags, the token in the body, spans
//! with string tags and a `CHILD_OF` reference); its OpenTelemetry tracer sends an OTLP
//! `ExportTraceServiceRequest` with one resource and one `envoy` scope. Each simulated sidecar
//! (reporter) gets its own body: its own reporter id, host name and `service.instance.id`, so a
//! satellite batching per reporter sees a fleet, not one client. Bodies are framed for their
//! transport (the 5-byte gRPC prefix included) and gzip-compressed here, never during the run.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cubesat::proto::collector as pb;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;

/// The wire protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// gRPC `lightstep.collector.CollectorService/Report` (Envoy's Lightstep tracer).
    LightstepGrpc,
    /// gRPC `opentelemetry.proto.collector.trace.v1.TraceService/Export` (Envoy's OTel tracer).
    OtlpGrpc,
    /// HTTP/1.1 `POST /v1/traces`, OTLP protobuf.
    OtlpHttp,
    /// HTTP/1.1 `POST /api/v2/reports`, `ReportRequest` protobuf (Go, Python, Node tracers).
    LightstepHttp,
}

/// gRPC path of the Lightstep collector's `Report`.
pub const REPORT_PATH: &str = "/lightstep.collector.CollectorService/Report";
/// gRPC path of OTLP's trace `Export`.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// HTTP path of OTLP/HTTP traces.
pub const OTLP_HTTP_PATH: &str = "/v1/traces";
/// HTTP path of Lightstep protobuf reports.
pub const LIGHTSTEP_HTTP_PATH: &str = "/api/v2/reports";

impl Protocol {
    /// Whether the protocol runs over gRPC (HTTP/2) rather than HTTP/1.1.
    pub fn is_grpc(self) -> bool {
        matches!(self, Protocol::LightstepGrpc | Protocol::OtlpGrpc)
    }

    /// Whether the body is an OTLP export (else a Lightstep report).
    pub fn is_otlp(self) -> bool {
        matches!(self, Protocol::OtlpGrpc | Protocol::OtlpHttp)
    }

    /// The request path.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::LightstepGrpc => REPORT_PATH,
            Protocol::OtlpGrpc => EXPORT_PATH,
            Protocol::OtlpHttp => OTLP_HTTP_PATH,
            Protocol::LightstepHttp => LIGHTSTEP_HTTP_PATH,
        }
    }

    /// The request's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::LightstepGrpc | Protocol::OtlpGrpc => "application/grpc",
            Protocol::OtlpHttp => "application/x-protobuf",
            Protocol::LightstepHttp => "application/octet-stream",
        }
    }
}

/// What every body of a run looks like.
#[derive(Debug, Clone)]
pub struct BodySpec {
    /// The protocol (message type and framing).
    pub protocol: Protocol,
    /// Spans in each request.
    pub spans: usize,
    /// String tags (attributes) on each span.
    pub tags: usize,
    /// Distinct sidecars: one body each.
    pub reporters: usize,
    /// Access token put in the Lightstep body (`auth.access_token`), as Envoy does.
    pub token: Option<String>,
    /// Compress bodies with gzip.
    pub gzip: bool,
}

/// One ready-to-send request body.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The bytes on the wire: the gRPC-framed (and maybe compressed) message, or the HTTP body.
    pub wire: Bytes,
    /// Spans in it.
    pub spans: u32,
}

/// The services a simulated mesh runs; sidecar `i` belongs to `SERVICES[i % len]`.
const SERVICES: [&str; 5] = [
    "productpage",
    "reviews",
    "ratings",
    "details",
    "istio-ingressgateway",
];

/// One simulated sidecar.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// Index in the fleet.
    pub index: u64,
    /// Its service (Envoy's `node.cluster`).
    pub service: &'static str,
    /// Pod name (host name, `service.instance.id`).
    pub pod: String,
    /// Lightstep reporter id.
    pub reporter_id: u64,
}

impl Sidecar {
    /// Sidecar number `index` of the fleet.
    pub fn new(index: u64) -> Self {
        let service = SERVICES[(index % SERVICES.len() as u64) as usize];
        let hash = mix(index);
        Sidecar {
            index,
            service,
            pod: format!("{service}-v1-{:08x}-{:05x}", hash >> 32, index & 0xfffff),
            reporter_id: hash | 1,
        }
    }

    fn namespace_service(&self) -> String {
        format!("{}.bookinfo.svc.cluster.local", self.service)
    }
}

/// SplitMix64: distinct, well-spread ids from small integers.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The tags Envoy's HTTP tracing puts on a span (`ConnectionManagerImpl`'s request tags and
/// Istio's custom tags), in the order they are most often present. `--tags N` takes the first
/// N; past the list, `tag.<n>` tags are added.
pub fn envoy_tags(car: &Sidecar, span: u64, n: usize) -> Vec<(String, String)> {
    let host = car.namespace_service();
    let all: [(&str, String); 20] = [
        ("component", "proxy".into()),
        (
            "node_id",
            format!(
                "sidecar~10.{}.{}.{}~{}.bookinfo~bookinfo.svc.cluster.local",
                (car.index >> 16) & 0xff,
                (car.index >> 8) & 0xff,
                car.index & 0xff,
                car.pod
            ),
        ),
        ("zone", "us-east1-b".into()),
        (
            "guid:x-request-id",
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                mix(span) as u32,
                (mix(span) >> 32) as u16,
                span & 0xfff,
                car.index & 0xfff,
                mix(span ^ car.reporter_id) & 0xffff_ffff_ffff
            ),
        ),
        ("http.url", format!("http://{host}:9080/{}?u={span}", car.service)),
        ("http.method", "GET".into()),
        ("downstream_cluster", "-".into()),
        (
            "user_agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36".into(),
        ),
        ("http.protocol", "HTTP/1.1".into()),
        ("peer.address", format!("10.8.{}.{}", (span >> 8) & 0xff, span & 0xff)),
        ("request_size", "0".into()),
        ("response_size", (1_800 + span % 700).to_string()),
        ("response_flags", "-".into()),
        ("http.status_code", "200".into()),
        ("upstream_cluster", format!("inbound|9080||{host}")),
        ("upstream_cluster.name", format!("inbound|9080||{host}")),
        ("istio.canonical_revision", "v1".into()),
        ("istio.canonical_service", car.service.into()),
        ("istio.mesh_id", "cluster.local".into()),
        ("istio.namespace", "bookinfo".into()),
    ];
    let mut tags: Vec<(String, String)> = all
        .into_iter()
        .take(n)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for extra in tags.len()..n {
        tags.push((format!("tag.{extra}"), format!("value-{extra}")));
    }
    tags
}

/// The operation name Envoy gives an inbound span (its route decorator default).
fn operation(car: &Sidecar) -> String {
    format!("{}:9080/*", car.namespace_service())
}

/// Unix time now, in nanoseconds (0 if the clock is before 1970).
fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The Lightstep `ReportRequest` sidecar `car` sends with `spec.spans` spans.
pub fn lightstep_report(spec: &BodySpec, car: &Sidecar) -> pb::ReportRequest {
    let tag = |k: &str, v: &str| pb::KeyValue {
        key: k.into(),
        value: Some(pb::key_value::Value::StringValue(v.into())),
    };
    let start = now_nanos();
    let spans = (0..spec.spans as u64)
        .map(|i| {
            let trace_id = mix(car.reporter_id ^ i);
            let mut tags: Vec<pb::KeyValue> = envoy_tags(car, i, spec.tags)
                .iter()
                .map(|(k, v)| tag(k, v))
                .collect();
            tags.push(tag(
                "span.kind",
                if i % 2 == 0 { "server" } else { "client" },
            ));
            let at = start + i * 1_000_000;
            pb::Span {
                span_context: Some(pb::SpanContext {
                    trace_id,
                    span_id: mix(trace_id),
                    baggage: Default::default(),
                }),
                operation_name: operation(car),
                references: vec![pb::Reference {
                    relationship: pb::reference::Relationship::ChildOf as i32,
                    span_context: Some(pb::SpanContext {
                        trace_id,
                        span_id: mix(trace_id ^ 1),
                        baggage: Default::default(),
                    }),
                }],
                start_timestamp: Some(prost_types::Timestamp {
                    seconds: (at / 1_000_000_000) as i64,
                    nanos: (at % 1_000_000_000) as i32,
                }),
                duration_micros: 900 + mix(i) % 4_000,
                tags,
                logs: vec![],
            }
        })
        .collect();
    pb::ReportRequest {
        reporter: Some(pb::Reporter {
            reporter_id: car.reporter_id,
            tags: vec![
                tag("lightstep.component_name", car.service),
                tag("lightstep.hostname", &car.pod),
                tag("lightstep.tracer_platform", "envoy"),
                tag("lightstep.tracer_platform_version", "1.23.12"),
                tag("lightstep.tracer_version", "0.19"),
            ],
        }),
        auth: spec.token.as_ref().map(|token| pb::Auth {
            access_token: token.clone(),
        }),
        spans,
        ..Default::default()
    }
}

/// The OTLP export sidecar `car` sends with `spec.spans` spans.
pub fn otlp_export(spec: &BodySpec, car: &Sidecar) -> ExportTraceServiceRequest {
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let start = now_nanos();
    let spans = (0..spec.spans as u64)
        .map(|i| {
            let trace = mix(car.reporter_id ^ i);
            let at = start + i * 1_000_000;
            Span {
                trace_id: [mix(trace).to_be_bytes(), trace.to_be_bytes()].concat(),
                span_id: mix(trace).to_be_bytes().to_vec(),
                parent_span_id: mix(trace ^ 1).to_be_bytes().to_vec(),
                name: operation(car),
                kind: if i % 2 == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                } as i32,
                start_time_unix_nano: at,
                end_time_unix_nano: at + (900 + mix(i) % 4_000) * 1_000,
                attributes: envoy_tags(car, i, spec.tags)
                    .iter()
                    .map(|(k, v)| attr(k, v))
                    .collect(),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", car.service),
                    attr("service.instance.id", &car.pod),
                    attr("host.name", &car.pod),
                    attr("telemetry.sdk.language", "cpp"),
                    attr("telemetry.sdk.name", "envoy"),
                    attr("telemetry.sdk.version", "1.40.0"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "envoy".into(),
                    version: "1.40.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The encoded message (no transport framing) sidecar `car` sends.
pub fn message(spec: &BodySpec, car: &Sidecar) -> Vec<u8> {
    if spec.protocol.is_otlp() {
        otlp_export(spec, car).encode_to_vec()
    } else {
        lightstep_report(spec, car).encode_to_vec()
    }
}

/// Why bodies could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// gzip failed (only on an allocation failure, in practice).
    #[error("gzip: {0}")]
    Gzip(#[from] std::io::Error),
    /// One message is past gRPC's 4 GiB frame limit.
    #[error("a request of {0} bytes is too large for one gRPC message")]
    TooLarge(usize),
}

/// Every sidecar's body, framed for `spec.protocol`, in sidecar order.
pub fn payloads(spec: &BodySpec) -> Result<Vec<Payload>, BodyError> {
    (0..spec.reporters.max(1) as u64)
        .map(|i| frame(spec, message(spec, &Sidecar::new(i))))
        .collect()
}

/// Compresses `message` if asked and adds the gRPC length prefix when the protocol is gRPC.
fn frame(spec: &BodySpec, message: Vec<u8>) -> Result<Payload, BodyError> {
    let body = if spec.gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&message)?;
        gz.finish()?
    } else {
        message
    };
    let wire = if spec.protocol.is_grpc() {
        let len = u32::try_from(body.len()).map_err(|_| BodyError::TooLarge(body.len()))?;
        let mut framed = Vec::with_capacity(body.len() + 5);
        framed.push(u8::from(spec.gzip));
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&body);
        framed
    } else {
        body
    };
    Ok(Payload {
        wire: Bytes::from(wire),
        spans: spec.spans as u32,
    })
}

#[cfg(test)]
mod tests;
