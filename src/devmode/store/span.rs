//! One stored span, held compactly: the fields queries read as plain numbers and interned
//! names, the rest of the OTLP span (attributes, events, links, status) kept as its protobuf
//! encoding and decoded only when a trace is shown or a `tag` filter has to look inside it.
//!
//! A decoded span with 15 attributes is about 2 KB of `KeyValue`s and small strings on the
//! heap; the same span encoded is about 600 bytes in one allocation. Also here: the id, value
//! and text conversions the store and the API share.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;

use crate::wire::Fields;

/// A 128-bit trace id (64-bit ids are padded with zeros on the left, the W3C rule).
pub type TraceId = [u8; 16];

/// The service of spans whose resource has no `service.name`, as the OTel SDKs name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// The resource (process) that sent spans: its service name and every attribute, interned by
/// the store so the spans of one resource share one copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// Its `service.name`, or [`UNKNOWN_SERVICE`].
    pub service: String,
    /// Every resource attribute (`service.name` included), as sent.
    pub attributes: Vec<KeyValue>,
}

impl Process {
    /// The process of an OTLP resource (`None`: a resource that was not sent).
    pub fn of(attributes: Vec<KeyValue>) -> Process {
        let service = attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(|v| text(v).into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned());
        Process {
            service,
            attributes,
        }
    }

    /// A process known only by its service name.
    pub fn named(service: &str) -> Process {
        Process {
            service: service.to_owned(),
            attributes: Vec::new(),
        }
    }
}

/// One stored span. See the module documentation.
#[derive(Debug, Clone)]
pub struct StoredSpan {
    /// The span id (its 8 bytes, big-endian).
    pub span_id: u64,
    /// The parent span id, 0 for a root.
    pub parent_span_id: u64,
    /// Start, microseconds since the Unix epoch.
    pub start_us: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// The `service.name` of its resource (interned; the pointer identifies the service).
    pub service: Arc<str>,
    /// The span name (interned).
    pub operation: Arc<str>,
    /// The resource that sent it.
    pub process: Arc<Process>,
    /// The rest of the OTLP span, encoded: ids, name, times and kind cleared.
    rest: Box<[u8]>,
    /// The OTLP span kind.
    pub kind: i32,
    /// Status ERROR, or an `error` attribute that is true.
    pub error: bool,
    /// Whether the span links to other spans.
    pub has_links: bool,
}

/// Why a span's ids cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadId {
    /// The trace id is neither 16 nor 8 bytes, or all zeros.
    Trace,
    /// The span id is not 8 bytes, or the parent id neither 8 bytes nor absent.
    Span,
}

impl StoredSpan {
    /// Takes `span` apart: its trace id and the stored form.
    pub(crate) fn new(
        mut span: Span,
        service: Arc<str>,
        operation: Arc<str>,
        process: Arc<Process>,
    ) -> Result<(TraceId, StoredSpan), BadId> {
        let trace_id = trace_id_of(&span.trace_id).ok_or(BadId::Trace)?;
        let span_id = span_id_of(&span.span_id).ok_or(BadId::Span)?;
        let parent_span_id = if span.parent_span_id.is_empty() {
            0
        } else {
            span_id_of(&span.parent_span_id).ok_or(BadId::Span)?
        };
        let (start_us, duration_us) = times(&span);
        let error = is_error(&span);
        let kind = span.kind;
        span.trace_id = Vec::new();
        span.span_id = Vec::new();
        span.parent_span_id = Vec::new();
        span.name = String::new();
        span.kind = 0;
        span.start_time_unix_nano = 0;
        span.end_time_unix_nano = 0;
        let has_links = !span.links.is_empty();
        let stored = StoredSpan {
            span_id,
            parent_span_id,
            start_us,
            duration_us,
            service,
            operation,
            process,
            rest: span.encode_to_vec().into_boxed_slice(),
            kind,
            error,
            has_links,
        };
        Ok((trace_id, stored))
    }

    /// Heap bytes this span holds on its own (the encoded rest).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.rest.len()
    }

    /// End, microseconds since the Unix epoch.
    pub fn end_us(&self) -> u64 {
        self.start_us.saturating_add(self.duration_us)
    }

    /// The span id in lowercase hex.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The parent span id in lowercase hex, `None` for a root.
    pub fn parent_hex(&self) -> Option<String> {
        (self.parent_span_id != 0).then(|| format!("{:016x}", self.parent_span_id))
    }

    /// The whole OTLP span, decoded again (`trace_id`: the stored trace's id).
    pub fn decode(&self, trace_id: &TraceId) -> Span {
        // The rest was encoded by `new` from a decoded span: it decodes.
        let mut span = Span::decode(&self.rest[..]).unwrap_or_default();
        span.trace_id = trace_id.to_vec();
        span.span_id = self.span_id.to_be_bytes().to_vec();
        if self.parent_span_id != 0 {
            span.parent_span_id = self.parent_span_id.to_be_bytes().to_vec();
        }
        span.name = self.operation.to_string();
        span.kind = self.kind;
        span.start_time_unix_nano = self.start_us.saturating_mul(1000);
        span.end_time_unix_nano = self.end_us().saturating_mul(1000);
        span
    }

    /// Whether the span has an attribute `key` whose value reads `want` (see [`text`]),
    /// found by walking the encoded attributes without decoding the others.
    pub fn has_attribute(&self, key: &str, want: &str) -> bool {
        any_attribute(&self.rest, key.as_bytes(), want)
    }
}

/// Whether an encoded `AnyValue` reads `want` (see [`text`]): a string, bool or integer (one
/// field, as encoders write a oneof) compared where it lies, anything else decoded.
fn reads(value: &[u8], want: &str) -> bool {
    use crate::wire::Value as Wire;
    let mut fields = Fields::new(value);
    let only = match (fields.next(), fields.next()) {
        (Some(Ok(field)), None) => Some(field),
        _ => None,
    };
    match only.map(|f| (f.number, f.value)) {
        Some((STRING_VALUE, Wire::Len { start, end })) => {
            value.get(start..end) == Some(want.as_bytes())
        }
        Some((BOOL_VALUE, Wire::Varint(b))) => want == if b != 0 { "true" } else { "false" },
        Some((INT_VALUE, Wire::Varint(i))) => {
            // At most 20 characters: "-9223372036854775808".
            let mut digits = [0u8; 20];
            let mut out = &mut digits[..];
            let written = std::io::Write::write_fmt(&mut out, format_args!("{}", i as i64));
            let n = 20 - out.len();
            written.is_ok() && digits[..n] == *want.as_bytes()
        }
        _ => AnyValue::decode(value).is_ok_and(|v| text(&v) == want),
    }
}

/// `Span.attributes`, `KeyValue.key` and `KeyValue.value` (opentelemetry/proto/trace/v1 and
/// common/v1): the only field numbers the store reads without prost.
const SPAN_ATTRIBUTES: u32 = 9;
const KEY: u32 = 1;
const VALUE: u32 = 2;
/// `AnyValue.string_value`, `bool_value` and `int_value`.
const STRING_VALUE: u32 = 1;
const BOOL_VALUE: u32 = 2;
const INT_VALUE: u32 = 3;

/// The tag of `Span.attributes`: field 9, length-delimited.
const ATTRIBUTE_TAG: u8 = (SPAN_ATTRIBUTES as u8) << 3 | 2;

/// How a walk of the encoded attributes ended early.
enum Walk {
    /// The attribute looked for is there.
    Found,
    /// The encoding is cut short (it cannot be: the store wrote it).
    Bad,
}

impl From<crate::wire::WireError> for Walk {
    fn from(_: crate::wire::WireError) -> Walk {
        Walk::Bad
    }
}

/// Whether encoded span `rest` has an attribute `key` whose value reads `want`. The
/// attributes are read as runs of one field (prost writes them together).
fn any_attribute(rest: &[u8], key: &[u8], want: &str) -> bool {
    let mut fields = Fields::new(rest);
    loop {
        let run = fields.take_run(ATTRIBUTE_TAG, |_, start, end| {
            match rest.get(start..end).and_then(|kv| value_of(kv, key)) {
                Some(value) if reads(value, want) => Err(Walk::Found),
                _ => Ok(()),
            }
        });
        match run {
            Err(Walk::Found) => return true,
            Err(Walk::Bad) => return false,
            Ok(()) => {}
        }
        // Step over a field that is not an attribute; at the end, nothing was found.
        if !matches!(fields.next(), Some(Ok(_))) {
            return false;
        }
    }
}

/// The encoded value of one encoded `KeyValue` if its key is `key`. prost writes each field
/// once, the key first, so a different key ends the look at once.
fn value_of<'a>(kv: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let (mut found, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields::new(kv).map_while(Result::ok) {
        match (field.number, field.len_range()) {
            (KEY, Ok((a, b))) => {
                found = kv.get(a..b).unwrap_or_default();
                if found != key {
                    return None;
                }
            }
            (VALUE, Ok((a, b))) => value = kv.get(a..b).unwrap_or_default(),
            _ => {}
        }
    }
    (found == key).then_some(value)
}

/// The 128-bit id of an OTLP trace id: 16 bytes as is, 8 bytes padded on the left.
pub fn trace_id_of(bytes: &[u8]) -> Option<TraceId> {
    let mut id = [0u8; 16];
    match bytes.len() {
        16 => id.copy_from_slice(bytes),
        8 => id[8..].copy_from_slice(bytes),
        _ => return None,
    }
    (id != [0; 16]).then_some(id)
}

/// An 8-byte span id as a number.
pub fn span_id_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub use crate::hexid::{encode as hex, parse_trace_id};

/// The name of an OTLP span kind.
pub fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

/// An attribute value as the `tag` filter compares it.
pub fn text(value: &AnyValue) -> Cow<'_, str> {
    match &value.value {
        Some(Value::StringValue(s)) => Cow::Borrowed(s),
        Some(Value::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(Value::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(Value::BytesValue(b)) => Cow::Owned(hex(b)),
        Some(Value::ArrayValue(_) | Value::KvlistValue(_)) => {
            Cow::Owned(value_json(value).to_string())
        }
        Some(Value::StringValueStrindex(i)) => Cow::Owned(i.to_string()),
        None => Cow::Borrowed(""),
    }
}

/// An attribute value as JSON: strings, bools, numbers (ints beyond 2^53 as strings so a
/// browser keeps every digit), bytes as hex, arrays and maps as arrays and objects.
pub fn value_json(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value as Json;
    const SAFE: i64 = 1 << 53;
    match &value.value {
        Some(Value::StringValue(s)) => Json::from(s.as_str()),
        Some(Value::BoolValue(b)) => Json::from(*b),
        Some(Value::IntValue(i)) if (-SAFE..=SAFE).contains(i) => Json::from(*i),
        Some(Value::IntValue(i)) => Json::from(i.to_string()),
        Some(Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or_else(|| Json::from(d.to_string()), Json::Number)
        }
        Some(Value::BytesValue(b)) => Json::from(hex(b)),
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(value_json).collect()),
        Some(Value::KvlistValue(l)) => Json::Object(attributes_json(&l.values)),
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
        None => Json::Null,
    }
}

/// Attributes as a JSON object (the last of repeated keys wins).
pub fn attributes_json(list: &[KeyValue]) -> serde_json::Map<String, serde_json::Value> {
    list.iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .map_or(serde_json::Value::Null, value_json);
            (kv.key.clone(), v)
        })
        .collect()
}

/// Status ERROR, or an `error` attribute that is true.
pub(crate) fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
        || span.attributes.iter().any(|kv| {
            kv.key == "error"
                && match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::BoolValue(b)) => *b,
                    Some(Value::StringValue(s)) => s.eq_ignore_ascii_case("true"),
                    _ => false,
                }
        })
}

/// Start and duration in microseconds.
pub(crate) fn times(span: &Span) -> (u64, u64) {
    let start = span.start_time_unix_nano / 1000;
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    (start, duration)
}

/// A generous estimate of the heap decoded attributes occupy (for interned resources).
pub(crate) fn attributes_footprint(list: &[KeyValue]) -> usize {
    fn any(v: &AnyValue) -> usize {
        match &v.value {
            Some(Value::StringValue(s)) => s.capacity(),
            Some(Value::BytesValue(b)) => b.capacity(),
            Some(Value::ArrayValue(a)) => {
                a.values.capacity() * size_of::<AnyValue>()
                    + a.values.iter().map(any).sum::<usize>()
            }
            Some(Value::KvlistValue(l)) => attributes_footprint(&l.values),
            _ => 0,
        }
    }
    list.len() * (size_of::<KeyValue>() + 32)
        + list
            .iter()
            .map(|kv| kv.key.capacity() + kv.value.as_ref().map_or(0, any))
            .sum::<usize>()
}
