//! Examples from the spec, and property tests: both round trips keep every field that both
//! models can hold (the losses listed in the module doc are normalised away, nothing else).

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto::collector as ls;

fn s(v: &str) -> Option<ls::key_value::Value> {
    Some(ls::key_value::Value::StringValue(v.into()))
}

fn kv(key: &str, value: Option<ls::key_value::Value>) -> ls::KeyValue {
    ls::KeyValue {
        key: key.into(),
        value,
    }
}

fn ts(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos })
}

fn attr<'a>(list: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    list.iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn ov(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

// ---------------------------------------------------------------------------------------------
// Examples.

fn python_like_report() -> ls::ReportRequest {
    ls::ReportRequest {
        reporter: Some(ls::Reporter {
            reporter_id: 77,
            tags: vec![
                kv("lightstep.component_name", s("inventory")),
                kv("lightstep.tracer_platform", s("python")),
                kv("lightstep.tracer_version", s("4.4.8")),
                kv("lightstep.hostname", s("box-1")),
            ],
        }),
        auth: Some(ls::Auth {
            access_token: "t".into(),
        }),
        spans: vec![ls::Span {
            span_context: Some(ls::SpanContext {
                trace_id: 0x0102_0304_0506_0708,
                span_id: 0xaa,
                baggage: HashMap::from([("user".into(), "alice".into())]),
            }),
            operation_name: "UPDATE stock".into(),
            references: vec![ls::Reference {
                relationship: 0,
                span_context: Some(ls::SpanContext {
                    trace_id: 0,
                    span_id: 0xbb,
                    baggage: HashMap::new(),
                }),
            }],
            start_timestamp: ts(1_700_000_000, 500),
            duration_micros: 1500,
            tags: vec![
                kv("error", s("True")),
                kv("span.kind", s("SERVER")),
                kv("quantity", s("3")),
                kv("n", Some(ls::key_value::Value::IntValue(-4))),
                kv(
                    "list",
                    Some(ls::key_value::Value::JsonValue("[1, \"a\"]".into())),
                ),
                kv("scalar", Some(ls::key_value::Value::JsonValue("7".into()))),
            ],
            logs: vec![ls::Log {
                timestamp: ts(1_700_000_001, 0),
                fields: vec![kv("key", s("stock:A-42")), kv("event", s("cache miss"))],
            }],
        }],
        timestamp_offset_micros: -250,
        internal_metrics: None,
    }
}

#[test]
fn lightstep_report_becomes_one_resource_with_renamed_attributes() {
    let export = report_to_export(&python_like_report());
    assert_eq!(export.resource_spans.len(), 1);
    let rs = &export.resource_spans[0];
    let attrs = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(attr(attrs, "service.name"), Some(&ov("inventory")));
    assert_eq!(
        attr(attrs, "lightstep.component_name"),
        Some(&ov("inventory"))
    );
    assert_eq!(attr(attrs, "host.name"), Some(&ov("box-1")));
    assert_eq!(attr(attrs, "telemetry.sdk.language"), Some(&ov("python")));
    assert_eq!(attr(attrs, "telemetry.sdk.version"), Some(&ov("4.4.8")));
    assert_eq!(
        attr(attrs, "lightstep.reporter_id"),
        Some(&any_value::Value::IntValue(77))
    );
    assert_eq!(rs.scope_spans.len(), 1);

    let span = &rs.scope_spans[0].spans[0];
    assert_eq!(
        span.trace_id,
        [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(span.span_id, 0xaau64.to_be_bytes());
    // trace_id 0 in the reference: the same trace.
    assert_eq!(span.parent_span_id, 0xbbu64.to_be_bytes());
    assert!(span.links.is_empty());
    assert_eq!(span.name, "UPDATE stock");
    assert_eq!(span.kind, 2);
    assert_eq!(span.status.as_ref().unwrap().code, 2);
    // The offset is applied: -250 µs.
    let start = 1_700_000_000_000_000_500u64 - 250_000;
    assert_eq!(span.start_time_unix_nano, start);
    assert_eq!(span.end_time_unix_nano, start + 1_500_000);
    assert_eq!(attr(&span.attributes, "error"), None);
    assert_eq!(attr(&span.attributes, "span.kind"), None);
    assert_eq!(attr(&span.attributes, "quantity"), Some(&ov("3")));
    assert_eq!(
        attr(&span.attributes, "n"),
        Some(&any_value::Value::IntValue(-4))
    );
    assert_eq!(attr(&span.attributes, "scalar"), Some(&ov("7")));
    let Some(any_value::Value::ArrayValue(list)) = attr(&span.attributes, "list") else {
        panic!("json array becomes an OTLP array");
    };
    assert_eq!(list.values.len(), 2);
    assert_eq!(attr(&span.attributes, "baggage.user"), Some(&ov("alice")));

    let event = &span.events[0];
    assert_eq!(event.name, "cache miss");
    assert_eq!(event.time_unix_nano, 1_700_000_001_000_000_000 - 250_000);
    assert_eq!(event.attributes.len(), 1);
    assert_eq!(attr(&event.attributes, "key"), Some(&ov("stock:A-42")));
}

#[test]
fn parent_span_guid_is_the_parent_without_references() {
    let mut report = python_like_report();
    let span = &mut report.spans[0];
    span.references.clear();
    span.tags
        .push(kv("parent_span_guid", s("00000000000000ff")));
    let export = report_to_export(&report);
    let out = &export.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(out.parent_span_id, 0xffu64.to_be_bytes());
    assert_eq!(attr(&out.attributes, "parent_span_guid"), None);

    // Beside a reference naming the same parent (Node), the redundant tag goes too.
    let mut report = python_like_report();
    report.spans[0].tags.push(kv("parent_span_guid", s("bb")));
    let out = report_to_export(&report);
    let out = &out.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(out.parent_span_id, 0xbbu64.to_be_bytes());
    assert_eq!(attr(&out.attributes, "parent_span_guid"), None);
}

#[test]
fn other_references_become_links_and_come_back() {
    let mut report = python_like_report();
    report.spans[0].references.push(ls::Reference {
        relationship: 1,
        span_context: Some(ls::SpanContext {
            trace_id: 99,
            span_id: 0xcc,
            baggage: HashMap::new(),
        }),
    });
    let export = report_to_export(&report);
    let out = &export.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(out.links.len(), 1);
    assert_eq!(out.links[0].trace_id[8..], 99u64.to_be_bytes());
    assert_eq!(out.links[0].span_id, 0xccu64.to_be_bytes());
    assert_eq!(
        attr(&out.links[0].attributes, "opentracing.ref_type"),
        Some(&ov("follows_from"))
    );
    let back = export_to_reports(&export).unwrap();
    let refs = &back[0].spans[0].references;
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0].relationship, 0);
    assert_eq!(refs[1].relationship, 1);
    assert_eq!(refs[1].span_context.as_ref().unwrap().trace_id, 99);
}

fn sdk_like_export() -> ExportTraceServiceRequest {
    let sv = |v: &str| {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        })
    };
    let okv = |k: &str, v| KeyValue {
        key: k.into(),
        value: v,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    okv("service.name", sv("checkout")),
                    okv("deployment.environment", sv("test")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(
                    opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                        name: "cubesat-e2e".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    },
                ),
                spans: vec![Span {
                    trace_id: (0x1111_2222_3333_4444_5555_6666_7777_8888u128)
                        .to_be_bytes()
                        .to_vec(),
                    span_id: 5u64.to_be_bytes().to_vec(),
                    parent_span_id: 4u64.to_be_bytes().to_vec(),
                    name: "SELECT orders".into(),
                    kind: 3,
                    start_time_unix_nano: 1_700_000_000_123_456_789,
                    end_time_unix_nano: 1_700_000_000_223_456_789,
                    attributes: vec![
                        okv("db.system", sv("postgresql")),
                        okv(
                            "ids",
                            Some(AnyValue {
                                value: Some(any_value::Value::ArrayValue(ArrayValue {
                                    values: vec![AnyValue {
                                        value: Some(any_value::Value::IntValue(1)),
                                    }],
                                })),
                            }),
                        ),
                    ],
                    events: vec![span::Event {
                        time_unix_nano: 1_700_000_000_200_000_000,
                        name: "retry".into(),
                        attributes: vec![okv("attempt", sv("2"))],
                        dropped_attributes_count: 0,
                    }],
                    status: Some(Status {
                        code: 2,
                        message: "timeout".into(),
                    }),
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

#[test]
fn otlp_span_becomes_a_lightstep_span_field_by_field() {
    let reports = export_to_reports(&sdk_like_export()).unwrap();
    assert_eq!(reports.len(), 1);
    let reporter = reports[0].reporter.as_ref().unwrap();
    assert_eq!(
        reporter.tags,
        vec![
            kv("lightstep.component_name", s("checkout")),
            kv("deployment.environment", s("test")),
        ]
    );
    assert_ne!(reporter.reporter_id, 0);
    let span = &reports[0].spans[0];
    let context = span.span_context.as_ref().unwrap();
    assert_eq!(context.trace_id, 0x5555_6666_7777_8888);
    assert_eq!(context.span_id, 5);
    assert_eq!(span.references.len(), 1);
    assert_eq!(span.references[0].relationship, 0);
    assert_eq!(span.references[0].span_context.as_ref().unwrap().span_id, 4);
    assert_eq!(span.operation_name, "SELECT orders");
    assert_eq!(span.start_timestamp, ts(1_700_000_000, 123_456_789));
    assert_eq!(span.duration_micros, 100_000);
    let tag = |k: &str| {
        span.tags
            .iter()
            .find(|t| t.key == k)
            .map(|t| t.value.clone())
    };
    assert_eq!(tag("db.system"), Some(s("postgresql")));
    assert_eq!(
        tag("ids"),
        Some(Some(ls::key_value::Value::JsonValue("[1]".into())))
    );
    assert_eq!(tag("span.kind"), Some(s("client")));
    assert_eq!(
        tag("error"),
        Some(Some(ls::key_value::Value::BoolValue(true)))
    );
    assert_eq!(tag("otel.status_description"), Some(s("timeout")));
    assert_eq!(
        tag("otel.trace_id"),
        Some(s("11112222333344445555666677778888"))
    );
    assert_eq!(tag("otel.scope.name"), Some(s("cubesat-e2e")));
    assert_eq!(tag("otel.scope.version"), Some(s("1.0")));
    assert_eq!(span.logs.len(), 1);
    assert_eq!(span.logs[0].timestamp, ts(1_700_000_000, 200_000_000));
    assert_eq!(
        span.logs[0].fields,
        vec![kv("event", s("retry")), kv("attempt", s("2"))]
    );

    // And back: the 128-bit trace id and the status survive.
    let again = report_to_export(&reports[0]);
    let back = &again.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(
        back.trace_id,
        sdk_like_export().resource_spans[0].scope_spans[0].spans[0].trace_id
    );
    assert_eq!(
        back.status,
        Some(Status {
            code: 2,
            message: "timeout".into()
        })
    );
}

#[test]
fn bad_otlp_ids_are_errors() {
    let mut export = sdk_like_export();
    export.resource_spans[0].scope_spans[0].spans[0].span_id = vec![1, 2, 3];
    let err = export_to_reports(&export).unwrap_err();
    assert!(err.to_string().contains("span_id: 3 bytes"), "{err}");
}

#[test]
fn byte_level_functions_translate_and_count() {
    let report = python_like_report();
    let out = report_bytes_to_export(&report.encode_to_vec(), usize::MAX).unwrap();
    assert_eq!(out.spans, 1);
    let export = ExportTraceServiceRequest::decode(out.body).unwrap();
    assert_eq!(export, report_to_export(&report));

    let export = sdk_like_export();
    let out = export_bytes_to_reports(&export.encode_to_vec()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].spans, 1);
    let report = ls::ReportRequest::decode(out[0].body.clone()).unwrap();
    assert_eq!(vec![report], export_to_reports(&export).unwrap());
    assert!(report_bytes_to_export(&[0x1a, 0x09], usize::MAX).is_err());
}

mod round_trip;
