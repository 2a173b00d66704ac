//! Thrift model -> Lightstep protobuf `ReportRequest`: guids to ids, the parent tag to a
//! reference, Thrift timing to start and duration.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ThriftError;
use super::model::{KeyValue, LogRecord, SpanRecord, TagValue, ThriftReport};
use crate::proto::collector as pb;

/// Tag in which tracers name a span's parent on the Thrift transports.
pub(super) const PARENT_SPAN_GUID: &str = "parent_span_guid";
/// Reporter tag holding the service name; Thrift's `Runtime.group_name` is the same thing.
pub(super) const COMPONENT_NAME: &str = "lightstep.component_name";

/// Converts a Thrift report into a protobuf `ReportRequest` carrying `access_token` (if any).
///
/// Hex guids become u64 ids (the low 64 bits of a longer one), a `parent_span_guid` tag
/// becomes a CHILD_OF reference in the same trace, `oldest/youngest_micros` become the start
/// and duration, `Runtime.group_name` becomes the reporter tag `lightstep.component_name`,
/// `error_flag` becomes the tag `error` = true, and logs keep their fields (with the event
/// name as `event`, the payload as JSON `payload`).
pub fn to_report_request(
    report: ThriftReport,
    access_token: Option<String>,
) -> Result<pb::ReportRequest, ThriftError> {
    let runtime = report.runtime.unwrap_or_default();
    let reporter_id = match runtime.guid.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(guid) => parse_guid(guid, "runtime.guid")?,
    };
    let mut reporter_tags: Vec<pb::KeyValue> = runtime
        .attrs
        .unwrap_or_default()
        .into_iter()
        .filter_map(key_value)
        .collect();
    if let Some(group) = runtime.group_name.filter(|g| !g.is_empty())
        && !reporter_tags.iter().any(|t| t.key == COMPONENT_NAME)
    {
        reporter_tags.push(string_tag(COMPONENT_NAME, group));
    }

    let records = report.span_records.unwrap_or_default();
    let mut spans = Vec::with_capacity(records.len());
    // Span guid (lowercased) -> index of the first span with it, so log matching is linear.
    let mut by_guid: HashMap<String, usize> = HashMap::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        if let Some(guid) = &record.span_guid {
            by_guid.entry(guid.to_ascii_lowercase()).or_insert(i);
        }
        spans.push(span(record, i)?);
    }
    // Top-level logs that name a span of this report belong to it.
    for log in report.log_records.unwrap_or_default() {
        let owner = log
            .span_guid
            .as_deref()
            .and_then(|g| by_guid.get(&g.to_ascii_lowercase()).copied());
        if let Some(index) = owner {
            spans[index].logs.push(self::log(log));
        }
    }

    let mut counts: Vec<pb::MetricsSample> = report
        .internal_metrics
        .and_then(|m| m.counts)
        .unwrap_or_default()
        .into_iter()
        .map(|s| pb::MetricsSample {
            name: s.name.unwrap_or_default(),
            value: match (s.int64_value, s.double_value) {
                (Some(n), _) => Some(pb::metrics_sample::Value::IntValue(n)),
                (None, Some(d)) => Some(pb::metrics_sample::Value::DoubleValue(d)),
                (None, None) => None,
            },
        })
        .collect();
    counts.extend(
        report
            .counters
            .unwrap_or_default()
            .into_iter()
            .map(|c| pb::MetricsSample {
                name: c.name.unwrap_or_default(),
                value: c.value.map(pb::metrics_sample::Value::IntValue),
            }),
    );

    Ok(pb::ReportRequest {
        reporter: Some(pb::Reporter {
            reporter_id,
            tags: reporter_tags,
        }),
        auth: access_token.map(|access_token| pb::Auth { access_token }),
        spans,
        timestamp_offset_micros: report.timestamp_offset_micros.unwrap_or(0),
        internal_metrics: (!counts.is_empty()).then(|| pb::InternalMetrics {
            counts,
            ..Default::default()
        }),
    })
}

fn span(record: SpanRecord, index: usize) -> Result<pb::Span, ThriftError> {
    let field = |name: &str| format!("span_records[{index}].{name}");
    let required = |value: Option<String>, name: &str| match value {
        Some(v) if !v.trim().is_empty() => parse_guid(v.trim(), &field(name)),
        _ => Err(ThriftError::MissingGuid { field: field(name) }),
    };
    let span_id = required(record.span_guid, "span_guid")?;
    let trace_id = required(record.trace_guid, "trace_guid")?;

    let mut tags = Vec::new();
    let mut references = Vec::new();
    for kv in record.attributes.unwrap_or_default() {
        // The parent travels as a tag on these transports; protobuf has a reference for it.
        if references.is_empty()
            && kv.key.as_deref() == Some(PARENT_SPAN_GUID)
            && let Some(TagValue::Str(parent)) = &kv.value
            && let Ok(parent) = parse_guid(parent.trim(), PARENT_SPAN_GUID)
        {
            references.push(pb::Reference {
                relationship: pb::reference::Relationship::ChildOf as i32,
                span_context: Some(pb::SpanContext {
                    trace_id,
                    span_id: parent,
                    baggage: Default::default(),
                }),
            });
            continue;
        }
        tags.extend(key_value(kv));
    }
    for join in record.join_ids.unwrap_or_default() {
        if let (Some(key), Some(value)) = (join.trace_key, join.value) {
            tags.push(string_tag(&key, value));
        }
    }
    if record.error_flag == Some(true) && !tags.iter().any(|t| t.key == "error") {
        tags.push(pb::KeyValue {
            key: "error".into(),
            value: Some(pb::key_value::Value::BoolValue(true)),
        });
    }

    let start = record.oldest_micros.unwrap_or(0);
    let duration = record
        .youngest_micros
        .map_or(0, |end| end.saturating_sub(start).max(0));
    Ok(pb::Span {
        span_context: Some(pb::SpanContext {
            trace_id,
            span_id,
            baggage: Default::default(),
        }),
        operation_name: record.span_name.unwrap_or_default(),
        references,
        start_timestamp: record.oldest_micros.map(timestamp),
        duration_micros: duration as u64,
        tags,
        logs: record
            .log_records
            .unwrap_or_default()
            .into_iter()
            .map(log)
            .collect(),
    })
}

fn log(record: LogRecord) -> pb::Log {
    let mut fields = Vec::new();
    if let Some(event) = record.stable_name {
        fields.push(string_tag("event", event));
    }
    if let Some(message) = record.message {
        fields.push(string_tag("message", message));
    }
    if let Some(level) = record.level {
        fields.push(string_tag("level", level));
    }
    if let Some(filename) = record.filename {
        fields.push(string_tag("filename", filename));
    }
    if let Some(line) = record.line_number {
        fields.push(pb::KeyValue {
            key: "line_number".into(),
            value: Some(pb::key_value::Value::IntValue(line)),
        });
    }
    if record.error_flag == Some(true) {
        fields.push(pb::KeyValue {
            key: "error".into(),
            value: Some(pb::key_value::Value::BoolValue(true)),
        });
    }
    if let Some(payload) = record.payload_json {
        let value = match payload {
            // A string is meant to hold JSON; keep it as JSON only if it is.
            TagValue::Str(s) if serde_json::from_str::<serde::de::IgnoredAny>(&s).is_ok() => {
                pb::key_value::Value::JsonValue(s)
            }
            TagValue::Str(s) => pb::key_value::Value::StringValue(s),
            other => match tag_value(other) {
                Some(v) => v,
                None => pb::key_value::Value::StringValue(String::new()),
            },
        };
        fields.push(pb::KeyValue {
            key: "payload".into(),
            value: Some(value),
        });
    }
    fields.extend(
        record
            .fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(key_value),
    );
    pb::Log {
        timestamp: record.timestamp_micros.map(timestamp),
        fields,
    }
}

/// A tag; a missing key drops it, a `null` value becomes the empty string.
fn key_value(kv: KeyValue) -> Option<pb::KeyValue> {
    let key = kv.key?;
    let value = kv
        .value
        .and_then(tag_value)
        .unwrap_or(pb::key_value::Value::StringValue(String::new()));
    Some(pb::KeyValue {
        key,
        value: Some(value),
    })
}

/// A JSON value as the protobuf value of the same type.
fn tag_value(value: TagValue) -> Option<pb::key_value::Value> {
    use pb::key_value::Value;
    Some(match value {
        TagValue::Str(s) => Value::StringValue(s),
        TagValue::Bool(b) => Value::BoolValue(b),
        TagValue::Int(n) => Value::IntValue(n),
        // Above i64::MAX: exact as text, not rounded to a double.
        TagValue::Uint(n) => Value::StringValue(n.to_string()),
        TagValue::Float(f) => Value::DoubleValue(f),
        TagValue::Json(serde_json::Value::Null) => return None,
        TagValue::Json(json) => Value::JsonValue(json.to_string()),
    })
}

fn string_tag(key: &str, value: String) -> pb::KeyValue {
    pb::KeyValue {
        key: key.into(),
        value: Some(pb::key_value::Value::StringValue(value)),
    }
}

pub(super) fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A hex guid as a u64; of a longer (128-bit) id, the low 64 bits, as tracers report them.
pub(super) fn parse_guid(guid: &str, field: &str) -> Result<u64, ThriftError> {
    let bad = || ThriftError::BadGuid {
        field: field.to_owned(),
        value: guid.chars().take(64).collect(),
    };
    crate::hexid::low_u64(guid).ok_or_else(bad)
}

/// Microseconds since the epoch, for Thrift `Timing`.
pub(super) fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}
