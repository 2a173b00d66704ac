//! The legacy Thrift transports of Lightstep tracers: Thrift-shaped JSON on `POST
//! /api/v0/reports` (Ruby, Objective-C, PHP, JS `transport: 'thrift'`) and a TBinaryProtocol
//! `Report(auth, request)` call on `POST /_rpc/v1/reports/binary` (Python `use_thrift=True`).
//!
//! Both bodies are read into one owned model ([`ThriftReport`]), converted into a Lightstep
//! protobuf `ReportRequest` ([`to_report_request`]) and handed to [`Intake::lightstep_report`],
//! so their spans join the same zero-copy pipeline as every other Lightstep report. These old
//! transports are rare and small, so the decode and re-encode here are no hot-path concern;
//! this module must never reach past the intake (no batching, no forwarding).

pub mod binary;
pub mod meter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use prost::Message;
use serde::Deserialize;

use self::meter::ModelMeter;
use super::http::{
    BodyError, Route, body_status, collect_limited, decoded_body, status_of, text_error,
};
use super::intake::{IngestError, Intake};
use super::{auth, blocking};
use crate::pipeline::{Charge, Part, Protocol};
use crate::proto::collector as pb;
use crate::telemetry;

/// Tag in which tracers name a span's parent on the Thrift transports.
const PARENT_SPAN_GUID: &str = "parent_span_guid";
/// Reporter tag holding the service name; Thrift's `Runtime.group_name` is the same thing.
const COMPONENT_NAME: &str = "lightstep.component_name";

/// Why a Thrift report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ThriftError {
    /// The body is not Thrift-shaped `ReportRequest` JSON.
    #[error("invalid Thrift ReportRequest JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is not a well-formed TBinaryProtocol `Report` call.
    #[error("invalid Thrift binary Report call: {0}")]
    Binary(String),
    /// The decoded report would take more memory than its size allows (a list or object
    /// bomb): refused before it is allocated.
    #[error(
        "the report decodes to more than {limit} bytes ({}x its size): send fewer or fuller elements per report",
        meter::MODEL_EXPANSION
    )]
    TooLarge {
        /// The allowance in bytes.
        limit: usize,
    },
    /// The memory budget cannot hold the decoded report now.
    #[error("cannot decode the report now: {0}")]
    Budget(crate::pipeline::BudgetFull),
    /// A required guid is absent or empty.
    #[error("{field} is missing")]
    MissingGuid {
        /// Where, e.g. `span_records[2].span_guid`.
        field: String,
    },
    /// A guid is not hexadecimal.
    #[error("{field} is not a hex guid: {value:?}")]
    BadGuid {
        /// Where.
        field: String,
        /// What came.
        value: String,
    },
}

// ---------------------------------------------------------------------------------------------
// The model: the Thrift `crouton` schema, as JSON clients spell it (every field may be `null`).

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
    parse_json_metered(body, &mut meter::ModelMeter::new(body.len()))
}

/// [`parse_json`], paying `meter` for an upper bound of the model first.
pub fn parse_json_metered(
    body: &[u8],
    meter: &mut meter::ModelMeter,
) -> Result<ThriftReport, ThriftError> {
    meter.take(meter::json_model_bytes(body))?;
    let text = String::from_utf8_lossy(body);
    Ok(serde_json::from_str(&text)?)
}

// ---------------------------------------------------------------------------------------------
// Thrift model -> Lightstep protobuf.

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

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

/// A hex guid as a u64; of a longer (128-bit) id, the low 64 bits, as tracers report them.
fn parse_guid(guid: &str, field: &str) -> Result<u64, ThriftError> {
    let bad = || ThriftError::BadGuid {
        field: field.to_owned(),
        value: guid.chars().take(64).collect(),
    };
    if guid.is_empty() || !guid.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let low = &guid[guid.len().saturating_sub(16)..];
    u64::from_str_radix(low, 16).map_err(|_| bad())
}

/// Microseconds since the epoch, for Thrift `Timing`.
fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------------------------
// Routes.

/// The Thrift routes: `POST /api/v0/reports` and `POST /_rpc/v1/reports/binary`.
pub fn routes(intake: Arc<Intake>, max_message_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/api/v0/reports", post(json_report))
        .route("/_rpc/v1/reports/binary", post(binary_report))
        .with_state(Route {
            intake,
            max_message_bytes,
        })
}

/// Why a Thrift route refused a request; the one mapping to an HTTP answer.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Thrift(#[from] ThriftError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Decode(#[from] blocking::DecodeFailed),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match &self {
            Refused::Body(error) => body_status(error),
            Refused::Thrift(error) => {
                // The intake never sees these; count them as it counts its own refusals.
                let (status, reason) = match error {
                    ThriftError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
                    ThriftError::Budget(_) => (StatusCode::SERVICE_UNAVAILABLE, "budget"),
                    _ => (StatusCode::BAD_REQUEST, "malformed"),
                };
                metrics::counter!(
                    telemetry::REPORTS_REJECTED,
                    "protocol" => Protocol::Lightstep.as_str(),
                    "reason" => reason
                )
                .increment(1);
                tracing::debug!(%error, "refused Thrift report");
                status
            }
            Refused::Ingest(error) => status_of(error),
            Refused::Decode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        text_error(status, self)
    }
}

/// Reads the body (limit, then `Content-Encoding`) and charges it to the budget.
async fn body_of(
    route: &Route,
    request: Request,
) -> Result<(http::HeaderMap, Bytes, Charge), Refused> {
    let (parts, body) = request.into_parts();
    let body = collect_limited(body, route.max_message_bytes).await?;
    let body = decoded_body(&parts.headers, body, route.max_message_bytes)?;
    let charge = route
        .intake
        .ring()
        .budget()
        .reserve(Part::InFlight, body.len(), 0)
        .map_err(ThriftError::Budget)?;
    Ok((parts.headers, body, charge))
}

/// Decodes `body` with `decode` on the blocking pool, paying for the model and the encoded
/// `ReportRequest` out of `charge`; returns the encoded request, what `decode` returned
/// beside it, and the charge now covering only the encoded request.
async fn decode_report<X: Send + 'static>(
    body: Bytes,
    charge: Charge,
    decode: impl FnOnce(&[u8], &mut ModelMeter) -> Result<(pb::ReportRequest, X), ThriftError>
    + Send
    + 'static,
) -> Result<(Bytes, X, Charge), Refused> {
    let decoded = blocking::decode(move || {
        let mut meter = ModelMeter::new(body.len()).charged(charge);
        let (request, extra) = decode(&body, &mut meter)?;
        let mut charge = meter.into_charge().expect("the meter was charged");
        let len = request.encoded_len();
        charge.try_grow(len).map_err(ThriftError::Budget)?;
        let encoded = Bytes::from(request.encode_to_vec());
        drop((request, body));
        // Only the encoded request is held from here on.
        charge.shrink(charge.bytes().saturating_sub(len));
        Ok::<_, ThriftError>((encoded, extra, charge))
    })
    .await??;
    Ok(decoded)
}

/// Hands an encoded report to the intake.
fn ingest(route: &Route, request: Bytes, header_token: Option<&[u8]>) -> Result<(), Refused> {
    route.intake.lightstep_report(request, header_token)?;
    Ok(())
}

async fn json_report(State(route): State<Route>, request: Request) -> Result<Response, Refused> {
    let received = SystemTime::now();
    let (headers, body, charge) = body_of(&route, request).await?;
    // These clients send the token only in the header.
    let header_token = auth::header_token(&headers);
    let token = header_token.map(|t| String::from_utf8_lossy(t).into_owned());
    let (request, (), _charge) = decode_report(body, charge, |body, meter| {
        Ok((
            to_report_request(parse_json_metered(body, meter)?, token)?,
            (),
        ))
    })
    .await?;
    ingest(&route, request, header_token)?;
    // The JS tracer feeds `timing` to its clock filter; `errors` must stay empty on success.
    let body = serde_json::json!({
        "timing": {
            "receive_micros": micros(received),
            "transmit_micros": micros(SystemTime::now()),
        },
        "commands": [],
        "errors": [],
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}

async fn binary_report(State(route): State<Route>, request: Request) -> Result<Response, Refused> {
    let received = SystemTime::now();
    let (headers, body, charge) = body_of(&route, request).await?;
    let header_token = auth::header_token(&headers);
    let fallback_token = header_token.map(|t| String::from_utf8_lossy(t).into_owned());
    let (request, (name, seqid), _charge) = decode_report(body, charge, |body, meter| {
        let call = binary::read_call_metered(body, meter)?;
        let token = call.access_token.or(fallback_token);
        let request = to_report_request(call.report, token)?;
        Ok((request, (call.name, call.seqid)))
    })
    .await?;
    ingest(&route, request, header_token)?;
    let reply = binary::write_reply(&name, seqid, micros(received), micros(SystemTime::now()))?;
    Ok(([(header::CONTENT_TYPE, "application/x-thrift")], reply).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_json() -> &'static str {
        r#"{"runtime":{"guid":"00ab","start_micros":1,"group_name":"checkout","attrs":[
               {"Key":"lightstep.tracer_platform","Value":"node"},{"Key":"pid","Value":42}]},
            "oldest_micros":null,"youngest_micros":null,"timestamp_offset_micros":-7,
            "span_records":[
              {"span_guid":"2","trace_guid":"0000000000000000ffffffffffffffff","runtime_guid":null,
               "span_name":"GET /cart","join_ids":null,"oldest_micros":1764064800000000.5,
               "youngest_micros":"1764064800001500","error_flag":true,
               "attributes":[{"Key":"parent_span_guid","Value":"1"},{"Key":"n","Value":3},
                 {"Key":"ratio","Value":0.5},{"Key":"ok","Value":false},{"Key":"nil","Value":null},
                 {"Key":"obj","Value":{"a":[1]}}],
               "log_records":[{"timestamp_micros":1764064800000100,"stable_name":"miss",
                 "payload_json":"{\"k\":1}","fields":[{"Key":"key","Value":"v"}]}]}],
            "log_records":[{"span_guid":"2","timestamp_micros":5,"message":"late"}],
            "internal_logs":null,
            "internal_metrics":{"counts":[{"name":"spans.dropped","int64_value":null,"double_value":2}]}}"#
    }

    fn tag<'a>(tags: &'a [pb::KeyValue], key: &str) -> Option<&'a pb::key_value::Value> {
        tags.iter()
            .find(|t| t.key == key)
            .and_then(|t| t.value.as_ref())
    }

    #[test]
    fn json_converts_field_by_field() {
        use pb::key_value::Value;
        let report = parse_json(sample_json().as_bytes()).unwrap();
        let req = to_report_request(report, Some("tok".into())).unwrap();
        assert_eq!(req.auth.unwrap().access_token, "tok");
        assert_eq!(req.timestamp_offset_micros, -7);
        let reporter = req.reporter.unwrap();
        assert_eq!(reporter.reporter_id, 0xab);
        assert_eq!(
            tag(&reporter.tags, COMPONENT_NAME),
            Some(&Value::StringValue("checkout".into()))
        );
        assert_eq!(tag(&reporter.tags, "pid"), Some(&Value::IntValue(42)));

        let span = &req.spans[0];
        let ctx = span.span_context.as_ref().unwrap();
        assert_eq!((ctx.trace_id, ctx.span_id), (u64::MAX, 2));
        assert_eq!(span.operation_name, "GET /cart");
        assert_eq!(span.references.len(), 1);
        let parent = span.references[0].span_context.as_ref().unwrap();
        assert_eq!((parent.trace_id, parent.span_id), (u64::MAX, 1));
        assert!(tag(&span.tags, PARENT_SPAN_GUID).is_none());
        let start = span.start_timestamp.unwrap();
        assert_eq!((start.seconds, start.nanos), (1_764_064_800, 0));
        assert_eq!(span.duration_micros, 1500);
        assert_eq!(tag(&span.tags, "n"), Some(&Value::IntValue(3)));
        assert_eq!(tag(&span.tags, "ratio"), Some(&Value::DoubleValue(0.5)));
        assert_eq!(tag(&span.tags, "ok"), Some(&Value::BoolValue(false)));
        assert_eq!(tag(&span.tags, "nil"), Some(&Value::StringValue("".into())));
        assert_eq!(
            tag(&span.tags, "obj"),
            Some(&Value::JsonValue(r#"{"a":[1]}"#.into()))
        );
        assert_eq!(tag(&span.tags, "error"), Some(&Value::BoolValue(true)));

        assert_eq!(
            span.logs.len(),
            2,
            "own log and the top-level one naming it"
        );
        let log = &span.logs[0];
        assert_eq!(log.timestamp.unwrap().nanos, 100_000);
        assert_eq!(
            tag(&log.fields, "event"),
            Some(&Value::StringValue("miss".into()))
        );
        assert_eq!(
            tag(&log.fields, "payload"),
            Some(&Value::JsonValue(r#"{"k":1}"#.into()))
        );
        assert_eq!(
            tag(&log.fields, "key"),
            Some(&Value::StringValue("v".into()))
        );
        assert_eq!(
            tag(&span.logs[1].fields, "message"),
            Some(&Value::StringValue("late".into()))
        );

        let counts = req.internal_metrics.unwrap().counts;
        assert_eq!(counts[0].name, "spans.dropped");
        assert_eq!(
            counts[0].value,
            Some(pb::metrics_sample::Value::DoubleValue(2.0))
        );
    }

    #[test]
    fn converted_report_is_scanned_by_the_wire_layer() {
        let report = parse_json(sample_json().as_bytes()).unwrap();
        let bytes = Bytes::from(to_report_request(report, None).unwrap().encode_to_vec());
        let scan = crate::wire::report::scan_report(&bytes, 1 << 20).unwrap();
        assert_eq!(scan.spans.count, 1);
        assert_eq!(scan.client_dropped_spans, 2);
        assert_eq!(scan.timestamp_offset_micros, -7);
    }

    #[test]
    fn bad_guids_and_json_are_named() {
        let err = to_report_request(
            parse_json(br#"{"span_records":[{"span_guid":"xyz","trace_guid":"1"}]}"#).unwrap(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"span_records[0].span_guid is not a hex guid: "xyz""#
        );
        let err = to_report_request(
            parse_json(br#"{"span_records":[{"span_guid":"1","trace_guid":null}]}"#).unwrap(),
            None,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "span_records[0].trace_guid is missing");
        let err = parse_json(br#"{"span_records":{"oops":1}}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid Thrift ReportRequest JSON")
        );
        let err = parse_json(br#"{"span_records":[{"oldest_micros":"soon"}]}"#).unwrap_err();
        assert!(
            err.to_string().contains("\"soon\" is not a 64-bit integer"),
            "{err}"
        );
        assert!(parse_json(b"{").is_err());
    }

    #[test]
    fn guids_take_the_low_64_bits() {
        assert_eq!(parse_guid("1", "x").unwrap(), 1);
        assert_eq!(parse_guid("FFFFFFFFFFFFFFFF", "x").unwrap(), u64::MAX);
        assert_eq!(
            parse_guid("0123456789abcdef0000000000000002", "x").unwrap(),
            2
        );
        assert!(parse_guid("+1", "x").is_err());
        assert!(parse_guid("", "x").is_err());
    }

    #[test]
    fn many_logs_match_their_spans_in_linear_time() {
        let spans = 20_000;
        let mut json = String::from("{\"span_records\":[");
        for i in 0..spans {
            json += &format!("{{\"span_guid\":\"{:X}\",\"trace_guid\":\"1\"}},", i + 1);
        }
        json.pop();
        json += "],\"log_records\":[";
        for i in 0..4 * spans {
            json += &format!(
                "{{\"span_guid\":\"{:x}\",\"message\":\"m\"}},",
                i % spans + 1
            );
        }
        json.pop();
        json += "]}";
        let started = std::time::Instant::now();
        let req = to_report_request(parse_json(json.as_bytes()).unwrap(), None).unwrap();
        assert!(req.spans.iter().all(|s| s.logs.len() == 4));
        // Quadratic matching took minutes at this size; linear takes well under a second.
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }

    #[test]
    fn json_object_bombs_are_refused_before_parsing() {
        let bomb = format!("{{\"span_records\":[{}{{}}]}}", "{},".repeat(100_000));
        assert!(matches!(
            parse_json(bomb.as_bytes()),
            Err(ThriftError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_report_is_fine() {
        let req = to_report_request(parse_json(b"{}").unwrap(), None).unwrap();
        assert!(req.spans.is_empty());
        assert!(req.auth.is_none());
    }

    #[test]
    fn negative_micros_stay_ordered() {
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_000));
    }
}
