//! Round trips on generated reports and exports: each model through the other and back
//! keeps exactly what both models hold (the documented losses are normalised away).

use super::*;

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
            prop_assert!(single || rs.encoded_len() <= max, "{} > {max}", rs.encoded_len());
        }
    }

    #[test]
    fn translation_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = report_bytes_to_export(&bytes, 64);
        let _ = export_bytes_to_reports(&bytes);
    }
}
