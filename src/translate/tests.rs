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

#[test]
fn a_huge_scope_name_copied_into_every_span_is_refused_before_translating() {
    let mut export = sdk_like_export();
    let ss = &mut export.resource_spans[0].scope_spans[0];
    ss.scope.as_mut().unwrap().name = "s".repeat(256 << 10);
    let span = ss.spans[0].clone();
    ss.spans = vec![span; 400];
    let body = export.encode_to_vec();
    let limit = output_limit(body.len(), 16 << 20);
    assert!(matches!(
        export_bytes_to_reports_within(&body, limit),
        Err(TranslateError::TooLarge { estimate, .. }) if estimate > 100 << 20
    ));
    // A few spans with the same scope still translate.
    export.resource_spans[0].scope_spans[0].spans.truncate(2);
    let body = export.encode_to_vec();
    let out = export_bytes_to_reports_within(&body, output_limit(body.len(), 16 << 20)).unwrap();
    assert_eq!(out[0].spans, 2);
}

#[test]
fn a_huge_reporter_is_copied_at_most_once_per_half_batch() {
    let mut report = python_like_report();
    let reporter = report.reporter.as_mut().unwrap();
    reporter.tags.push(kv("big", s(&"r".repeat(200 << 10))));
    let span = report.spans[0].clone();
    report.spans = vec![span; 500];
    let body = report.encode_to_vec();
    let limit = output_limit(body.len(), 16 << 20);
    // 64 KiB batches: without the floor every span would carry its own 200 KiB resource.
    let out = report_bytes_to_export_within(&body, 64 << 10, limit).unwrap();
    assert!(
        out.body.len() <= limit,
        "{} from {}",
        out.body.len(),
        body.len()
    );
    assert_eq!(out.spans, 500);
    // Tiny batches would need a copy per span: refused, not built.
    assert!(matches!(
        report_bytes_to_export_within(&body, 1024, limit),
        Err(TranslateError::TooLarge { .. })
    ));
}

#[test]
fn reports_of_empty_spans_are_refused_before_decoding() {
    assert!(check_decoded_size(1_000_000, 2_000_000).is_err());
    assert!(check_decoded_size(1_000, 200_000).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Generators.

fn key() -> impl Strategy<Value = String> {
    // A prefix keeps generated keys apart from the special tags (`error`, `span.kind`, ...).
    "k_[a-z.]{1,6}"
}

fn finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |d| d.is_finite())
}

/// OTLP values that JSON can carry exactly (no bytes, finite doubles).
fn any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        ".*".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        finite().prop_map(any_value::Value::DoubleValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    let leaf = prop_oneof![9 => leaf, 1 => Just(AnyValue { value: None })];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
            }),
            prop::collection::vec((".*", inner), 0..4).prop_map(|entries| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: entries
                        .into_iter()
                        .map(|(key, v)| KeyValue {
                            key,
                            value: v.value.is_some().then_some(v),
                            ..Default::default()
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn structured() -> impl Strategy<Value = AnyValue> {
    any_value().prop_filter("array or map", |v| {
        matches!(
            v.value,
            Some(any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_))
        )
    })
}

fn ls_value() -> impl Strategy<Value = Option<ls::key_value::Value>> {
    use ls::key_value::Value as L;
    prop_oneof![
        ".*".prop_map(|v| Some(L::StringValue(v))),
        any::<i64>().prop_map(|v| Some(L::IntValue(v))),
        finite().prop_map(|v| Some(L::DoubleValue(v))),
        any::<bool>().prop_map(|v| Some(L::BoolValue(v))),
        structured().prop_map(|v| Some(L::JsonValue(json::to_json(Some(&v))))),
        Just(None),
    ]
}

fn ls_tags() -> impl Strategy<Value = Vec<ls::KeyValue>> {
    prop::collection::btree_map(key(), ls_value(), 0..5).prop_map(|m| {
        m.into_iter()
            .map(|(key, value)| ls::KeyValue { key, value })
            .collect()
    })
}

fn timestamp() -> impl Strategy<Value = prost_types::Timestamp> {
    (1_000_000i64..4_000_000_000, 0i32..1_000_000_000)
        .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos })
}

fn ls_reference(trace_id: u64) -> impl Strategy<Value = ls::Reference> {
    (
        0i32..2,
        prop_oneof![Just(0u64), Just(trace_id), any::<u64>()],
        1u64..,
    )
        .prop_map(|(relationship, trace_id, span_id)| ls::Reference {
            relationship,
            span_context: Some(ls::SpanContext {
                trace_id,
                span_id,
                baggage: HashMap::new(),
            }),
        })
}

fn ls_span() -> impl Strategy<Value = ls::Span> {
    (any::<u64>(), 1u64.., any::<u64>(), ".*")
        .prop_flat_map(|(trace_id, span_id, high, name)| {
            (
                Just((trace_id, span_id, high, name)),
                prop::collection::vec(ls_reference(trace_id), 0..3),
                prop::collection::btree_map("[a-z]{1,5}", ".*", 0..3),
                timestamp(),
                0u64..1_000_000_000_000,
                ls_tags(),
                prop::option::of(prop::sample::select(vec![
                    "client", "server", "producer", "consumer", "internal",
                ])),
                any::<bool>(),
                prop::collection::vec((timestamp(), prop::option::of(".*"), ls_tags()), 0..3),
            )
        })
        .prop_map(
            |(
                (trace_id, span_id, high, name),
                references,
                baggage,
                start,
                duration,
                mut tags,
                kind,
                error,
                logs,
            )| {
                if let Some(kind) = kind {
                    tags.push(kv("span.kind", s(kind)));
                }
                if error {
                    tags.push(kv("error", Some(ls::key_value::Value::BoolValue(true))));
                }
                if high != 0 {
                    tags.push(kv(
                        "otel.trace_id",
                        s(&format!("{high:016x}{trace_id:016x}")),
                    ));
                }
                ls::Span {
                    span_context: Some(ls::SpanContext {
                        trace_id,
                        span_id,
                        baggage: baggage.into_iter().collect(),
                    }),
                    operation_name: name,
                    references,
                    start_timestamp: Some(start),
                    duration_micros: duration,
                    tags,
                    logs: logs
                        .into_iter()
                        .map(|(t, event, fields)| ls::Log {
                            timestamp: Some(t),
                            fields: event
                                .map(|e| kv("event", s(&e)))
                                .into_iter()
                                .chain(fields)
                                .collect(),
                        })
                        .collect(),
                }
            },
        )
}

fn ls_report() -> impl Strategy<Value = ls::ReportRequest> {
    (
        any::<u64>(),
        ls_tags(),
        prop::collection::btree_map(
            prop::sample::select(RESOURCE_RENAMES.iter().map(|(l, _)| *l).collect::<Vec<_>>()),
            ".*",
            0..4,
        ),
        prop::collection::vec(ls_span(), 1..4),
        -100_000_000_000i64..100_000_000_000,
        prop::option::of(".*"),
    )
        .prop_map(|(reporter_id, mut tags, renamed, spans, offset, token)| {
            tags.extend(renamed.into_iter().map(|(k, v)| kv(k, s(&v))));
            ls::ReportRequest {
                reporter: Some(ls::Reporter { reporter_id, tags }),
                auth: token.map(|access_token| ls::Auth { access_token }),
                spans,
                timestamp_offset_micros: offset,
                internal_metrics: None,
            }
        })
}

fn otlp_attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    (
        prop::collection::btree_map(key(), prop::option::of(any_value()), 0..5),
        prop::collection::btree_map("baggage\\.[a-z]{1,5}", ".*", 0..2),
    )
        .prop_map(|(plain, baggage)| {
            plain
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key,
                    value: value.filter(|v| v.value.is_some()),
                    ..Default::default()
                })
                .chain(baggage.into_iter().map(|(key, v)| KeyValue {
                    key,
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(v)),
                    }),
                    ..Default::default()
                }))
                .collect()
        })
}

fn id8() -> impl Strategy<Value = Vec<u8>> {
    (1u64..).prop_map(|id| id.to_be_bytes().to_vec())
}

fn otlp_span() -> impl Strategy<Value = Span> {
    (any::<u128>(), id8(), prop::option::of(id8()))
        .prop_flat_map(|(trace_id, span_id, parent)| {
            let trace = trace_id.to_be_bytes().to_vec();
            let has_parent = parent.is_some();
            let link = (
                prop_oneof![
                    Just(trace.clone()),
                    (1u64..).prop_map(|low| u128::from(low).to_be_bytes().to_vec()),
                ],
                id8(),
                if has_parent {
                    prop::sample::select(vec![REF_TYPE_CHILD_OF, REF_TYPE_FOLLOWS_FROM]).boxed()
                } else {
                    Just(REF_TYPE_FOLLOWS_FROM).boxed()
                },
            )
                .prop_map(|(trace_id, span_id, ref_type)| span::Link {
                    trace_id,
                    span_id,
                    attributes: vec![KeyValue {
                        key: REF_TYPE_ATTRIBUTE.into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(ref_type.into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            (
                Just((trace, span_id, parent)),
                ".*",
                0i32..6,
                0u64..4_000_000_000_000_000_000,
                0u64..10_000_000_000_000,
                otlp_attributes(),
                prop::collection::vec((any::<u64>(), ".*", otlp_attributes()), 0..3),
                prop::collection::vec(link, 0..3),
                prop::option::of((1i32..3, ".*")),
            )
        })
        .prop_map(
            |(
                (trace_id, span_id, parent),
                name,
                kind,
                start,
                duration,
                attributes,
                events,
                links,
                status,
            )| Span {
                trace_id,
                span_id,
                parent_span_id: parent.unwrap_or_default(),
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: start + duration,
                attributes,
                events: events
                    .into_iter()
                    .map(|(time_unix_nano, name, attributes)| span::Event {
                        time_unix_nano,
                        name,
                        attributes,
                        dropped_attributes_count: 0,
                    })
                    .collect(),
                links,
                status: status.map(|(code, message)| Status { message, code }),
                ..Default::default()
            },
        )
}

fn otlp_export() -> impl Strategy<Value = ExportTraceServiceRequest> {
    let resource = (
        otlp_attributes(),
        prop::collection::btree_map(
            prop::sample::select(RESOURCE_RENAMES.iter().map(|(_, o)| *o).collect::<Vec<_>>()),
            ".*",
            0..4,
        ),
    )
        .prop_map(|(mut attributes, renamed)| {
            attributes.extend(renamed.into_iter().map(|(k, v)| KeyValue {
                key: k.into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v)),
                }),
                ..Default::default()
            }));
            Resource {
                attributes,
                ..Default::default()
            }
        });
    prop::collection::vec((resource, prop::collection::vec(otlp_span(), 1..4)), 1..3).prop_map(
        |resources| ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(resource, spans)| ResourceSpans {
                    resource: Some(resource),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Normalisation: exactly the documented losses.

fn shift(t: &prost_types::Timestamp, offset_micros: i64) -> prost_types::Timestamp {
    let n = i128::from(t.seconds) * 1_000_000_000
        + i128::from(t.nanos)
        + i128::from(offset_micros) * 1000;
    prost_types::Timestamp {
        seconds: (n / 1_000_000_000) as i64,
        nanos: (n % 1_000_000_000) as i32,
    }
}

fn sorted_tags(mut tags: Vec<ls::KeyValue>) -> Vec<ls::KeyValue> {
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    tags
}

/// What Lightstep -> OTLP -> Lightstep must give back for `report`.
fn expected_ls(report: &ls::ReportRequest) -> ls::ReportRequest {
    let offset = report.timestamp_offset_micros;
    let reporter = report.reporter.clone().map(|r| ls::Reporter {
        reporter_id: r.reporter_id,
        tags: sorted_tags(r.tags),
    });
    let spans = report
        .spans
        .iter()
        .map(|span| {
            let mut span = span.clone();
            let trace_id = span.span_context.as_ref().map_or(0, |c| c.trace_id);
            if let Some(first) = span.references.iter().position(|r| r.relationship == 0) {
                let parent = span.references.remove(first);
                span.references.insert(0, parent);
                span.references[0].span_context.as_mut().unwrap().trace_id = trace_id;
            }
            for r in &mut span.references {
                let c = r.span_context.as_mut().unwrap();
                if c.trace_id == 0 {
                    c.trace_id = trace_id;
                }
            }
            span.start_timestamp = span.start_timestamp.map(|t| shift(&t, offset));
            span.tags = sorted_tags(span.tags);
            for log in &mut span.logs {
                log.timestamp = log.timestamp.map(|t| shift(&t, offset));
                if !log.fields.iter().any(|f| f.key == "event") {
                    log.fields.insert(0, kv("event", s("log")));
                }
            }
            span
        })
        .collect();
    ls::ReportRequest {
        reporter,
        auth: None,
        spans,
        timestamp_offset_micros: 0,
        internal_metrics: None,
    }
}

fn sort_attributes(list: &mut [KeyValue]) {
    list.sort_by(|a, b| a.key.cmp(&b.key));
}

/// What OTLP -> Lightstep -> OTLP must give back for `export`, and `got` made comparable.
fn comparable_otlp(
    export: &ExportTraceServiceRequest,
    original: bool,
) -> ExportTraceServiceRequest {
    let mut export = export.clone();
    for rs in &mut export.resource_spans {
        if let Some(resource) = &mut rs.resource {
            if !original {
                resource
                    .attributes
                    .retain(|a| !a.key.starts_with("lightstep."));
            }
            sort_attributes(&mut resource.attributes);
        }
        for ss in &mut rs.scope_spans {
            for span in &mut ss.spans {
                sort_attributes(&mut span.attributes);
                if original {
                    let micros = (span.end_time_unix_nano - span.start_time_unix_nano) / 1000;
                    span.end_time_unix_nano = span.start_time_unix_nano + micros * 1000;
                }
            }
        }
    }
    export
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lightstep_round_trip_keeps_what_both_models_hold(report in ls_report()) {
        let export = report_to_export(&report);
        let back = export_to_reports(&export).unwrap();
        prop_assert_eq!(back.len(), 1);
        let mut back = back.into_iter().next().unwrap();
        if let Some(r) = &mut back.reporter {
            r.tags = sorted_tags(std::mem::take(&mut r.tags));
        }
        for span in &mut back.spans {
            span.tags = sorted_tags(std::mem::take(&mut span.tags));
        }
        prop_assert_eq!(back, expected_ls(&report));
    }

    #[test]
    fn otlp_round_trip_keeps_what_both_models_hold(export in otlp_export()) {
        let reports = export_to_reports(&export).unwrap();
        prop_assert_eq!(reports.len(), export.resource_spans.len());
        let back = ExportTraceServiceRequest {
            resource_spans: reports
                .iter()
                .flat_map(|r| report_to_export(r).resource_spans)
                .collect(),
        };
        prop_assert_eq!(comparable_otlp(&back, false), comparable_otlp(&export, true));
    }

    #[test]
    fn byte_translation_matches_typed_translation(report in ls_report()) {
        let out = report_bytes_to_export(&report.encode_to_vec(), usize::MAX).unwrap();
        prop_assert_eq!(out.spans as usize, report.spans.len());
        prop_assert_eq!(ExportTraceServiceRequest::decode(out.body).unwrap(), report_to_export(&report));
    }

    #[test]
    fn splitting_keeps_every_span_in_order_within_the_limit(
        export in otlp_export(),
        max in 200usize..4000,
    ) {
        let split = split_resource_spans(export.clone(), max);
        let spans = |e: &ExportTraceServiceRequest| -> Vec<(Option<Resource>, Span)> {
            e.resource_spans
                .iter()
                .flat_map(|rs| {
                    rs.scope_spans
                        .iter()
                        .flat_map(move |ss| ss.spans.iter().map(move |s| (rs.resource.clone(), s.clone())))
                })
                .collect()
        };
        prop_assert_eq!(spans(&split), spans(&export));
        for rs in &split.resource_spans {
            let single = rs.scope_spans.iter().map(|ss| ss.spans.len()).sum::<usize>() == 1;
            // A resource and scope over half the limit get half the limit of spans per piece.
            let mut shell = rs.clone();
            shell.scope_spans.iter_mut().for_each(|ss| ss.spans.clear());
            let bound = max.max(shell.encoded_len() + 20 + max / 2);
            prop_assert!(single || rs.encoded_len() <= bound, "{} > {bound}", rs.encoded_len());
        }
    }

    #[test]
    fn translation_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = report_bytes_to_export(&bytes, 64);
        let _ = export_bytes_to_reports(&bytes);
    }
}
