//! The Thrift `crouton` schema as JSON clients spell it (every field may be `null`), and the
//! one owned model both Thrift transports are read into.

use serde::Deserialize;

use super::ThriftError;

/// A Thrift `ReportRequest` (the fields cubesat uses; others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ThriftReport {
    /// The reporting process.
    pub runtime: Option<Runtime>,
    /// The spans.
    pub span_records: Option<Vec<SpanRecord>>,
    /// Logs outside spans; those naming a span of the report are attached to it.
    pub log_records: Option<Vec<LogRecord>>,
    /// Server clock minus client clock, from the tracer's clock filter.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp_offset_micros: Option<i64>,
    /// Old-style counters (`Name`/`Value`).
    pub counters: Option<Vec<NamedCounter>>,
    /// The tracer's own metrics, e.g. `spans.dropped`.
    pub internal_metrics: Option<Metrics>,
}

/// A Thrift `Runtime`: the reporter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Runtime {
    /// Hex id of the tracer instance.
    pub guid: Option<String>,
    /// The service name (`lightstep.component_name` in protobuf).
    pub group_name: Option<String>,
    /// Reporter tags.
    pub attrs: Option<Vec<KeyValue>>,
}

/// A Thrift `KeyValue`; the schema says string values, JSON clients also send others.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(rename = "Key", alias = "key")]
    pub key: Option<String>,
    /// The value.
    #[serde(rename = "Value", alias = "value")]
    pub value: Option<TagValue>,
}

/// A tag value as it arrived.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TagValue {
    /// A string (what the Thrift schema defines).
    Str(String),
    /// A JSON boolean.
    Bool(bool),
    /// A JSON integer.
    Int(i64),
    /// A JSON integer above `i64::MAX`.
    Uint(u64),
    /// A JSON number with a fraction.
    Float(f64),
    /// An object or array.
    Json(serde_json::Value),
}

/// A Thrift `TraceJoinId`: an extra key naming a trace.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TraceJoinId {
    /// The key.
    #[serde(rename = "TraceKey")]
    pub trace_key: Option<String>,
    /// The value.
    #[serde(rename = "Value")]
    pub value: Option<String>,
}

/// A Thrift `SpanRecord`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SpanRecord {
    /// Hex span id.
    pub span_guid: Option<String>,
    /// Hex trace id.
    pub trace_guid: Option<String>,
    /// Operation name.
    pub span_name: Option<String>,
    /// Extra trace keys; kept as tags.
    pub join_ids: Option<Vec<TraceJoinId>>,
    /// Start, microseconds since the epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub oldest_micros: Option<i64>,
    /// End, microseconds since the epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub youngest_micros: Option<i64>,
    /// Tags.
    pub attributes: Option<Vec<KeyValue>>,
    /// Whether the span failed.
    pub error_flag: Option<bool>,
    /// Logs.
    pub log_records: Option<Vec<LogRecord>>,
}

/// A Thrift `LogRecord`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LogRecord {
    /// When, microseconds since the epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp_micros: Option<i64>,
    /// The span it belongs to (top-level logs only).
    pub span_guid: Option<String>,
    /// The event name.
    pub stable_name: Option<String>,
    /// A message.
    pub message: Option<String>,
    /// A level (`I`, `W`, `E`, `F`).
    pub level: Option<String>,
    /// Source file.
    pub filename: Option<String>,
    /// Source line.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub line_number: Option<i64>,
    /// A JSON payload (a string holding JSON).
    pub payload_json: Option<TagValue>,
    /// Whether the log reports an error.
    pub error_flag: Option<bool>,
    /// Key/value fields.
    pub fields: Option<Vec<KeyValue>>,
}

/// A Thrift `NamedCounter`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NamedCounter {
    /// The name.
    #[serde(rename = "Name", alias = "name")]
    pub name: Option<String>,
    /// The count.
    #[serde(
        rename = "Value",
        alias = "value",
        default,
        deserialize_with = "lenient_i64"
    )]
    pub value: Option<i64>,
}

/// A Thrift `Metrics`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Metrics {
    /// Counts, e.g. `spans.dropped`.
    pub counts: Option<Vec<MetricsSample>>,
}

/// A Thrift `MetricsSample`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MetricsSample {
    /// The name.
    pub name: Option<String>,
    /// An integer value.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub int64_value: Option<i64>,
    /// A floating-point value.
    pub double_value: Option<f64>,
}

/// An integer that JSON clients may send as a number (with a fraction: JS clocks), a string,
/// or `null`.
fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
        Str(String),
    }
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Float(f)) if f.is_finite() && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        Some(Number::Float(f)) => Err(serde::de::Error::custom(format!(
            "{f} is not a 64-bit integer"
        ))),
        Some(Number::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a 64-bit integer"))),
    }
}

/// Parses Thrift-shaped `ReportRequest` JSON. Invalid UTF-8 is repaired first (real clients
/// send it; a strict parser would refuse the whole report).
pub fn parse_json(body: &[u8]) -> Result<ThriftReport, ThriftError> {
    let text = String::from_utf8_lossy(body);
    Ok(serde_json::from_str(&text)?)
}
