//! Lightstep `ReportRequest` -> OTLP `ExportTraceServiceRequest` (one `ResourceSpans` per
//! report, one `ScopeSpans` in it). The mapping and its losses are in the module doc of
//! [`crate::translate`].

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

use super::{
    BAGGAGE_PREFIX, ERROR_TAG, PARENT_SPAN_GUID_TAG, REF_TYPE_ATTRIBUTE, REF_TYPE_CHILD_OF,
    REF_TYPE_FOLLOWS_FROM, REPORTER_ID_ATTRIBUTE, RESOURCE_RENAMES, SPAN_KIND_TAG, STATUS_CODE_TAG,
    STATUS_DESCRIPTION_TAG, TRACE_ID_TAG, json, kind_from_tag,
};
use crate::hexid;
use crate::proto::collector as ls;

const CHILD_OF: i32 = ls::reference::Relationship::ChildOf as i32;
const STATUS_ERROR: i32 = 2;
const STATUS_OK: i32 = 1;

/// Translates one Lightstep report. A report without spans gives an empty request.
pub fn report_to_export(report: &ls::ReportRequest) -> ExportTraceServiceRequest {
    if report.spans.is_empty() {
        return ExportTraceServiceRequest::default();
    }
    let offset = report.timestamp_offset_micros;
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(report.reporter.as_ref())),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans: report.spans.iter().map(|s| span(s, offset)).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn resource(reporter: Option<&ls::Reporter>) -> Resource {
    let Some(reporter) = reporter else {
        return Resource::default();
    };
    let has = |key: &str| reporter.tags.iter().any(|t| t.key == key);
    let mut attributes: Vec<KeyValue> = reporter.tags.iter().map(key_value).collect();
    for (lightstep, otel) in RESOURCE_RENAMES {
        if let Some(tag) = reporter.tags.iter().find(|t| t.key == lightstep)
            && !has(otel)
        {
            attributes.push(KeyValue {
                key: otel.to_owned(),
                ..key_value(tag)
            });
        }
    }
    if !has(REPORTER_ID_ATTRIBUTE) {
        attributes.push(attribute(
            REPORTER_ID_ATTRIBUTE,
            any_value::Value::IntValue(reporter.reporter_id as i64),
        ));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// A Lightstep value as an OTLP one; `json_value` arrays and objects become structured.
pub(super) fn value(value: &ls::key_value::Value) -> AnyValue {
    use ls::key_value::Value as L;
    let v = match value {
        L::StringValue(s) => any_value::Value::StringValue(s.clone()),
        L::IntValue(i) => any_value::Value::IntValue(*i),
        L::DoubleValue(d) => any_value::Value::DoubleValue(*d),
        L::BoolValue(b) => any_value::Value::BoolValue(*b),
        L::JsonValue(text) => match json::structured_from_json(text) {
            Some(structured) => return structured,
            None => any_value::Value::StringValue(text.clone()),
        },
    };
    AnyValue { value: Some(v) }
}

fn key_value(kv: &ls::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key.clone(),
        value: kv.value.as_ref().map(value),
        ..Default::default()
    }
}

fn attribute(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn string_of(kv: &ls::KeyValue) -> Option<&str> {
    match &kv.value {
        Some(ls::key_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

/// Nanoseconds since the epoch of a timestamp shifted by `offset_micros`, clamped to `u64`.
fn nanos(timestamp: Option<&prost_types::Timestamp>, offset_micros: i64) -> u64 {
    let base = timestamp.map_or(0, |t| {
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
    });
    let shifted = base + i128::from(offset_micros) * 1000;
    shifted.clamp(0, i128::from(u64::MAX)) as u64
}

fn padded(trace_id: u64) -> [u8; 16] {
    let mut id = [0; 16];
    id[8..].copy_from_slice(&trace_id.to_be_bytes());
    id
}

fn span(s: &ls::Span, offset: i64) -> Span {
    let context = s.span_context.clone().unwrap_or_default();
    let mut consumed = vec![false; s.tags.len()];
    let mut take = |pred: &dyn Fn(&ls::KeyValue) -> bool| -> Option<usize> {
        let at = s
            .tags
            .iter()
            .enumerate()
            .position(|(i, t)| !consumed[i] && pred(t))?;
        consumed[at] = true;
        Some(at)
    };

    // The full 128-bit trace id, when an earlier translation kept it in a tag.
    let trace_id = take(&|t| {
        t.key == TRACE_ID_TAG
            && string_of(t)
                .and_then(hexid::parse_u128)
                .is_some_and(|id| id[8..] == context.trace_id.to_be_bytes())
    })
    .and_then(|at| string_of(&s.tags[at]).and_then(hexid::parse_u128))
    .unwrap_or_else(|| padded(context.trace_id));

    let kind = take(&|t| t.key == SPAN_KIND_TAG && string_of(t).and_then(kind_from_tag).is_some())
        .and_then(|at| string_of(&s.tags[at]).and_then(kind_from_tag))
        .unwrap_or(0);

    let error = take(&|t| {
        t.key == ERROR_TAG
            && match &t.value {
                Some(ls::key_value::Value::BoolValue(b)) => *b,
                Some(ls::key_value::Value::StringValue(v)) => v.eq_ignore_ascii_case("true"),
                _ => false,
            }
    })
    .is_some();
    let code_tag = take(&|t| {
        t.key == STATUS_CODE_TAG
            && string_of(t)
                .is_some_and(|v| v.eq_ignore_ascii_case("OK") || v.eq_ignore_ascii_case("ERROR"))
    })
    .and_then(|at| string_of(&s.tags[at]));
    let code = match code_tag {
        _ if error => STATUS_ERROR,
        Some(v) if v.eq_ignore_ascii_case("ERROR") => STATUS_ERROR,
        Some(_) => STATUS_OK,
        None => 0,
    };
    let message = if code != 0 {
        take(&|t| t.key == STATUS_DESCRIPTION_TAG && string_of(t).is_some())
            .and_then(|at| string_of(&s.tags[at]))
            .unwrap_or_default()
            .to_owned()
    } else {
        String::new()
    };

    // Parent: the first CHILD_OF reference, else the `parent_span_guid` tag.
    let parent_ref = s.references.iter().position(|r| r.relationship == CHILD_OF);
    let parent_id =
        parent_ref.and_then(|at| s.references[at].span_context.as_ref().map(|c| c.span_id));
    let guid = |t: &ls::KeyValue| {
        t.key == PARENT_SPAN_GUID_TAG && string_of(t).and_then(hexid::parse_u64).is_some()
    };
    let parent_id = match parent_id {
        // A redundant guid tag beside the reference (Node's tracer) goes too.
        Some(id) => {
            take(&|t| guid(t) && string_of(t).and_then(hexid::parse_u64) == Some(id));
            Some(id)
        }
        None if parent_ref.is_none() => {
            take(&guid).and_then(|at| string_of(&s.tags[at]).and_then(hexid::parse_u64))
        }
        None => None,
    };

    let links = s
        .references
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != parent_ref)
        .map(|(_, r)| {
            let link_context = r.span_context.clone().unwrap_or_default();
            let link_trace =
                if link_context.trace_id == 0 || link_context.trace_id == context.trace_id {
                    trace_id
                } else {
                    padded(link_context.trace_id)
                };
            let ref_type = if r.relationship == CHILD_OF {
                REF_TYPE_CHILD_OF
            } else {
                REF_TYPE_FOLLOWS_FROM
            };
            span::Link {
                trace_id: link_trace.to_vec(),
                span_id: link_context.span_id.to_be_bytes().to_vec(),
                attributes: vec![attribute(
                    REF_TYPE_ATTRIBUTE,
                    any_value::Value::StringValue(ref_type.to_owned()),
                )],
                ..Default::default()
            }
        })
        .collect();

    let mut attributes: Vec<KeyValue> = s
        .tags
        .iter()
        .zip(&consumed)
        .filter(|(_, c)| !**c)
        .map(|(t, _)| key_value(t))
        .collect();
    // Baggage has no OTLP slot: it travels as `baggage.<key>` attributes, sorted so that the
    // output does not depend on hash order.
    let mut baggage: Vec<_> = context.baggage.iter().collect();
    baggage.sort();
    attributes.extend(baggage.into_iter().map(|(k, v)| {
        attribute(
            &format!("{BAGGAGE_PREFIX}{k}"),
            any_value::Value::StringValue(v.clone()),
        )
    }));

    let start = nanos(s.start_timestamp.as_ref(), offset);
    let end = start.saturating_add(s.duration_micros.saturating_mul(1000));
    let events = s
        .logs
        .iter()
        .map(|log| {
            let time = match &log.timestamp {
                Some(t) => nanos(Some(t), offset),
                None => start,
            };
            let name_at = log
                .fields
                .iter()
                .position(|f| f.key == super::EVENT_FIELD && string_of(f).is_some());
            span::Event {
                time_unix_nano: time,
                name: name_at
                    .and_then(|at| string_of(&log.fields[at]))
                    .unwrap_or(super::DEFAULT_EVENT_NAME)
                    .to_owned(),
                attributes: log
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != name_at)
                    .map(|(_, f)| key_value(f))
                    .collect(),
                dropped_attributes_count: 0,
            }
        })
        .collect();

    Span {
        trace_id: trace_id.to_vec(),
        span_id: context.span_id.to_be_bytes().to_vec(),
        parent_span_id: parent_id
            .filter(|id| *id != 0)
            .map(|id| id.to_be_bytes().to_vec())
            .unwrap_or_default(),
        name: s.operation_name.clone(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events,
        links,
        status: (code != 0).then_some(Status { message, code }),
        ..Default::default()
    }
}
