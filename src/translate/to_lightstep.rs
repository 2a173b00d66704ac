//! OTLP `ExportTraceServiceRequest` -> Lightstep `ReportRequest`s, one per `ResourceSpans`
//! (a Lightstep request has exactly one reporter). The mapping and its losses are in the
//! module doc of [`crate::translate`].

use std::collections::HashMap;

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::{
    BAGGAGE_PREFIX, ERROR_TAG, EVENT_FIELD, REF_TYPE_ATTRIBUTE, REF_TYPE_CHILD_OF,
    REPORTER_ID_ATTRIBUTE, RESOURCE_RENAMES, SCOPE_NAME_TAG, SCOPE_VERSION_TAG, SPAN_KIND_TAG,
    STATUS_CODE_TAG, STATUS_DESCRIPTION_TAG, TRACE_ID_TAG, TranslateError, json, kind_to_tag,
};
use crate::proto::collector as ls;

const STATUS_ERROR: i32 = 2;
const STATUS_OK: i32 = 1;

/// Translates one OTLP export: one report per `ResourceSpans` that holds spans.
pub fn export_to_reports(
    export: &ExportTraceServiceRequest,
) -> Result<Vec<ls::ReportRequest>, TranslateError> {
    let mut reports = Vec::with_capacity(export.resource_spans.len());
    for rs in &export.resource_spans {
        let mut spans = Vec::new();
        for scope_spans in &rs.scope_spans {
            for s in &scope_spans.spans {
                spans.push(span(s, scope_spans.scope.as_ref())?);
            }
        }
        if spans.is_empty() {
            continue;
        }
        reports.push(ls::ReportRequest {
            reporter: Some(reporter(rs.resource.as_ref())),
            auth: None,
            spans,
            timestamp_offset_micros: 0,
            internal_metrics: None,
        });
    }
    Ok(reports)
}

fn reporter(resource: Option<&Resource>) -> ls::Reporter {
    let empty = Resource::default();
    let resource = resource.unwrap_or(&empty);
    let attrs = &resource.attributes;
    let find = |key: &str| attrs.iter().find(|a| a.key == key);
    let mut reporter_id = None;
    let mut tags = Vec::with_capacity(attrs.len());
    for a in attrs {
        if a.key == REPORTER_ID_ATTRIBUTE
            && let Some(any_value::Value::IntValue(id)) =
                a.value.as_ref().and_then(|v| v.value.as_ref())
            && reporter_id.is_none()
        {
            reporter_id = Some(*id as u64);
            continue;
        }
        match RESOURCE_RENAMES.iter().find(|(_, otel)| *otel == a.key) {
            Some((lightstep, _)) => match find(lightstep) {
                // The twin an earlier translation added: the Lightstep tag already says it.
                Some(twin) if twin.value == a.value => {}
                Some(_) => tags.push(key_value(a)),
                None => tags.push(ls::KeyValue {
                    key: (*lightstep).to_owned(),
                    value: a.value.as_ref().and_then(value),
                }),
            },
            None => tags.push(key_value(a)),
        }
    }
    ls::Reporter {
        // Without an id, one derived from the resource keeps each resource's reporter stable.
        reporter_id: reporter_id.unwrap_or_else(|| fnv1a(&resource.encode_to_vec()).max(1)),
        tags,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An OTLP value as a Lightstep one; arrays and maps become `json_value`, bytes base64.
fn value(v: &AnyValue) -> Option<ls::key_value::Value> {
    use ls::key_value::Value as L;
    Some(match v.value.as_ref()? {
        any_value::Value::StringValue(s) => L::StringValue(s.clone()),
        any_value::Value::BoolValue(b) => L::BoolValue(*b),
        any_value::Value::IntValue(i) => L::IntValue(*i),
        any_value::Value::DoubleValue(d) => L::DoubleValue(*d),
        any_value::Value::BytesValue(b) => {
            L::StringValue(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) => {
            L::JsonValue(json::to_json(Some(v)))
        }
        any_value::Value::StringValueStrindex(_) => return None,
    })
}

fn key_value(kv: &KeyValue) -> ls::KeyValue {
    ls::KeyValue {
        key: kv.key.clone(),
        value: kv.value.as_ref().and_then(value),
    }
}

fn tag(key: &str, v: ls::key_value::Value) -> ls::KeyValue {
    ls::KeyValue {
        key: key.to_owned(),
        value: Some(v),
    }
}

/// `(low 64 bits, high 64 bits)` of a trace id: 16 bytes, 8 (a bare 64-bit id) or none.
fn trace_id(field: &'static str, id: &[u8]) -> Result<(u64, u64), TranslateError> {
    match id.len() {
        0 => Ok((0, 0)),
        8 => Ok((be_u64(id), 0)),
        16 => Ok((be_u64(&id[8..]), be_u64(&id[..8]))),
        len => Err(TranslateError::BadId { field, len }),
    }
}

fn span_id(field: &'static str, id: &[u8]) -> Result<u64, TranslateError> {
    match id.len() {
        0 => Ok(0),
        8 => Ok(be_u64(id)),
        len => Err(TranslateError::BadId { field, len }),
    }
}

fn be_u64(bytes: &[u8]) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn timestamp(nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (nanos / 1_000_000_000) as i64,
        nanos: (nanos % 1_000_000_000) as i32,
    }
}

fn span(s: &Span, scope: Option<&InstrumentationScope>) -> Result<ls::Span, TranslateError> {
    let (trace_low, trace_high) = trace_id("trace_id", &s.trace_id)?;
    let id = span_id("span_id", &s.span_id)?;
    let parent = span_id("parent_span_id", &s.parent_span_id)?;

    let mut references = Vec::with_capacity(s.links.len() + 1);
    if parent != 0 {
        references.push(ls::Reference {
            relationship: ls::reference::Relationship::ChildOf as i32,
            span_context: Some(context(trace_low, parent, HashMap::new())),
        });
    }
    for link in &s.links {
        let (link_trace, _) = trace_id("link trace_id", &link.trace_id)?;
        let child_of = link.attributes.iter().any(|a| {
            a.key == REF_TYPE_ATTRIBUTE
                && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()),
                    Some(any_value::Value::StringValue(t)) if t == REF_TYPE_CHILD_OF)
        });
        references.push(ls::Reference {
            relationship: if child_of {
                ls::reference::Relationship::ChildOf
            } else {
                ls::reference::Relationship::FollowsFrom
            } as i32,
            span_context: Some(context(
                link_trace,
                span_id("link span_id", &link.span_id)?,
                HashMap::new(),
            )),
        });
    }

    let mut baggage = HashMap::new();
    let mut tags = Vec::with_capacity(s.attributes.len() + 4);
    for a in &s.attributes {
        if let Some(key) = a.key.strip_prefix(BAGGAGE_PREFIX)
            && let Some(any_value::Value::StringValue(v)) =
                a.value.as_ref().and_then(|v| v.value.as_ref())
        {
            baggage.insert(key.to_owned(), v.clone());
            continue;
        }
        tags.push(key_value(a));
    }
    if let Some(kind) = kind_to_tag(s.kind) {
        tags.push(tag(
            SPAN_KIND_TAG,
            ls::key_value::Value::StringValue(kind.to_owned()),
        ));
    }
    let status = s.status.clone().unwrap_or_default();
    match status.code {
        STATUS_ERROR => tags.push(tag(ERROR_TAG, ls::key_value::Value::BoolValue(true))),
        STATUS_OK => tags.push(tag(
            STATUS_CODE_TAG,
            ls::key_value::Value::StringValue("OK".to_owned()),
        )),
        _ => {}
    }
    if matches!(status.code, STATUS_ERROR | STATUS_OK) && !status.message.is_empty() {
        tags.push(tag(
            STATUS_DESCRIPTION_TAG,
            ls::key_value::Value::StringValue(status.message.clone()),
        ));
    }
    if trace_high != 0 {
        tags.push(tag(
            TRACE_ID_TAG,
            ls::key_value::Value::StringValue(format!("{trace_high:016x}{trace_low:016x}")),
        ));
    }
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            tags.push(tag(
                SCOPE_NAME_TAG,
                ls::key_value::Value::StringValue(scope.name.clone()),
            ));
        }
        if !scope.version.is_empty() {
            tags.push(tag(
                SCOPE_VERSION_TAG,
                ls::key_value::Value::StringValue(scope.version.clone()),
            ));
        }
    }

    let logs = s
        .events
        .iter()
        .map(|e| {
            let mut fields = Vec::with_capacity(e.attributes.len() + 1);
            fields.push(tag(
                EVENT_FIELD,
                ls::key_value::Value::StringValue(e.name.clone()),
            ));
            fields.extend(e.attributes.iter().map(key_value));
            ls::Log {
                timestamp: Some(timestamp(e.time_unix_nano)),
                fields,
            }
        })
        .collect();

    Ok(ls::Span {
        span_context: Some(context(trace_low, id, baggage)),
        operation_name: s.name.clone(),
        references,
        start_timestamp: Some(timestamp(s.start_time_unix_nano)),
        duration_micros: s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1000,
        tags,
        logs,
    })
}

fn context(trace_id: u64, span_id: u64, baggage: HashMap<String, String>) -> ls::SpanContext {
    ls::SpanContext {
        trace_id,
        span_id,
        baggage,
    }
}
