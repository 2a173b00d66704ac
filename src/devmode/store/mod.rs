//! The developer-mode trace store: decoded OTLP spans (the translation layer's model) kept in
//! memory, grouped by trace and indexed by service, operation and tag, within a byte budget.
//!
//! The budget is charged per span with a deliberately generous estimate of what the span and
//! its index entries occupy on the heap, and when a new span does not fit, whole traces are
//! evicted, oldest first (by the arrival of their first span), so a trace is never shown with
//! holes. Queries answer the JSON API: span predicates over candidate traces taken from the
//! smallest matching index, summaries, latency histograms, service dependencies.
//!
//! A plain data structure: no I/O, no locks, no metrics, no logging. Its owner (`devmode`)
//! serialises writers and counts what [`Store::insert`] reports.

mod index;
mod query;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::mem::size_of;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::Serialize;

use index::{Postings, Prehashed, ServiceEntry, indexed_tags, post, unpost};
pub use query::{
    Bucket, Edge, Latency, OperationSummary, ServiceSummary, SpanQuery, SpanSummary, TraceSummary,
};

/// A 128-bit trace id (64-bit ids are padded with zeros on the left, the W3C rule).
pub type TraceId = [u8; 16];

/// Charged per span for its slot in the trace's `Vec` (with growth slack) and its share of the
/// service and operation postings.
const SPAN_OVERHEAD: usize = 2 * size_of::<StoredSpan>() + 96;
/// Charged per indexed attribute: a posting in a B-tree set, and a share of a hash-map entry.
const TAG_POSTING: usize = 64;
/// Charged per trace: its entry in the arrival map and the id map.
const TRACE_OVERHEAD: usize = 2 * size_of::<Trace>() + 128;
/// Traces with at most this many spans find a parent by a scan rather than a map.
pub(crate) const SMALL_TRACE: usize = 64;
/// Attribute values longer than this are not indexed (ids, URLs with query strings, bodies);
/// they still match a `tag` filter, through a scan.
pub(crate) const MAX_INDEXED_VALUE: usize = 256;

/// One stored span: the OTLP span with its service and the fields queries read.
#[derive(Debug, Clone)]
pub struct StoredSpan {
    /// The OTLP span; its `name` has been moved into `operation`.
    pub span: Span,
    /// The `service.name` of its resource.
    pub service: Arc<str>,
    /// The span name (interned).
    pub operation: Arc<str>,
    /// Start, microseconds since the Unix epoch.
    pub start_us: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Status ERROR, or an `error` attribute that is true.
    pub error: bool,
}

impl StoredSpan {
    /// End, microseconds since the Unix epoch.
    pub fn end_us(&self) -> u64 {
        self.start_us.saturating_add(self.duration_us)
    }

    /// The span id in lowercase hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id in lowercase hex, `None` for a root.
    pub fn parent_hex(&self) -> Option<String> {
        (!self.span.parent_span_id.is_empty()).then(|| hex(&self.span.parent_span_id))
    }
}

/// All stored spans of one trace.
#[derive(Debug)]
pub struct Trace {
    /// The trace id.
    pub id: TraceId,
    /// Its spans, in arrival order.
    pub spans: Vec<StoredSpan>,
    seq: u64,
    pub(crate) start_us: u64,
    pub(crate) end_us: u64,
    bytes: usize,
}

impl Trace {
    /// The trace id in lowercase hex (32 digits).
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// The span a trace view starts from: the earliest span whose parent is not in the trace.
    pub fn root(&self) -> Option<&StoredSpan> {
        let ids: HashSet<&[u8]> = self.spans.iter().map(|s| &s.span.span_id[..]).collect();
        self.spans
            .iter()
            .filter(|s| !ids.contains(&s.span.parent_span_id[..]))
            .min_by_key(|s| s.start_us)
            .or_else(|| self.spans.iter().min_by_key(|s| s.start_us))
    }

    pub(crate) fn summary(&self, matched: usize) -> TraceSummary {
        let root = self.root();
        let services: BTreeSet<&str> = self.spans.iter().map(|s| &*s.service).collect();
        TraceSummary {
            trace_id: self.id_hex(),
            root_service: root.map(|s| s.service.to_string()).unwrap_or_default(),
            root_operation: root.map(|s| s.operation.to_string()).unwrap_or_default(),
            start_us: self.start_us,
            duration_us: self.end_us.saturating_sub(self.start_us),
            spans: self.spans.len(),
            services: services.into_iter().map(str::to_owned).collect(),
            errors: self.spans.iter().filter(|s| s.error).count(),
            matched,
        }
    }
}

/// Why a span was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The trace id is neither 16 nor 8 bytes, or all zeros.
    #[error("invalid trace id")]
    InvalidTraceId,
    /// The span alone is larger than the whole store.
    #[error("span larger than the store")]
    TooLarge,
}

/// What one insert evicted to make room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Whole traces evicted.
    pub traces: u64,
    /// Spans in them.
    pub spans: u64,
}

/// Sizes and counts, for status pages and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreStats {
    /// Bytes charged for what is stored now.
    pub used_bytes: usize,
    /// The budget.
    pub limit_bytes: usize,
    /// Spans stored now.
    pub spans: u64,
    /// Traces stored now.
    pub traces: u64,
    /// Spans evicted since start.
    pub evicted_spans: u64,
    /// Traces evicted since start.
    pub evicted_traces: u64,
}

/// The store. See the module documentation.
#[derive(Debug)]
pub struct Store {
    limit: usize,
    used: usize,
    next_seq: u64,
    spans: u64,
    /// Traces by arrival of their first span: the first entry is evicted first.
    traces: BTreeMap<u64, Trace>,
    ids: HashMap<TraceId, u64>,
    services: BTreeMap<Arc<str>, ServiceEntry>,
    /// Hash of (key, value text) -> traces holding such an attribute.
    tags: HashMap<u64, Postings, BuildHasherDefault<Prehashed>>,
    evicted: Evicted,
}

impl Store {
    /// An empty store that keeps at most `limit_bytes` (as charged).
    pub fn new(limit_bytes: usize) -> Store {
        Store {
            limit: limit_bytes,
            used: 0,
            next_seq: 0,
            spans: 0,
            traces: BTreeMap::new(),
            ids: HashMap::new(),
            services: BTreeMap::new(),
            tags: HashMap::default(),
            evicted: Evicted::default(),
        }
    }

    /// Sizes and counts.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            used_bytes: self.used,
            limit_bytes: self.limit,
            spans: self.spans,
            traces: self.traces.len() as u64,
            evicted_spans: self.evicted.spans,
            evicted_traces: self.evicted.traces,
        }
    }

    /// Stores `span` of `service`, evicting the oldest whole traces while it does not fit.
    pub fn insert(&mut self, service: &str, mut span: Span) -> Result<Evicted, Rejected> {
        let id = trace_id_of(&span.trace_id).ok_or(Rejected::InvalidTraceId)?;
        let indexed = indexed_tags(&span);
        let mut charge = footprint(&span) + indexed.len() * TAG_POSTING;
        if !self.ids.contains_key(&id) {
            charge += TRACE_OVERHEAD;
        }
        if charge > self.limit {
            return Err(Rejected::TooLarge);
        }
        let mut evicted = Evicted::default();
        while self.used + charge > self.limit {
            let Some((_, oldest)) = self.traces.pop_first() else {
                break;
            };
            evicted.traces += 1;
            evicted.spans += oldest.spans.len() as u64;
            if oldest.id == id {
                // The span's own trace went; it starts again and pays for its entry.
                charge += TRACE_OVERHEAD;
            }
            self.forget(oldest);
        }
        self.evicted.traces += evicted.traces;
        self.evicted.spans += evicted.spans;
        if self.used + charge > self.limit {
            // Only when the span's own trace was evicted and restarting it does not fit.
            return Err(Rejected::TooLarge);
        }

        let seq = match self.ids.get(&id) {
            Some(&seq) => seq,
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.ids.insert(id, seq);
                self.traces.insert(
                    seq,
                    Trace {
                        id,
                        spans: Vec::new(),
                        seq,
                        start_us: u64::MAX,
                        end_us: 0,
                        bytes: 0,
                    },
                );
                seq
            }
        };
        let error = is_error(&span);
        let (start_us, duration_us) = times(&span);
        let name = std::mem::take(&mut span.name);
        let service: Arc<str> = match self.services.get_key_value(service) {
            Some((k, _)) => k.clone(),
            None => Arc::from(service),
        };
        let entry = self.services.entry(service.clone()).or_default();
        entry.spans += 1;
        entry.errors += u64::from(error);
        post(&mut entry.traces, seq);
        let operation = match entry.operations.get_key_value(name.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        };
        let op = entry.operations.entry(operation.clone()).or_default();
        op.spans += 1;
        op.errors += u64::from(error);
        post(&mut op.traces, seq);
        for hash in indexed {
            post(self.tags.entry(hash).or_default(), seq);
        }

        let trace = self
            .traces
            .get_mut(&seq)
            .expect("trace entry was just ensured");
        let stored = StoredSpan {
            span,
            service,
            operation,
            start_us,
            duration_us,
            error,
        };
        trace.start_us = trace.start_us.min(stored.start_us);
        trace.end_us = trace.end_us.max(stored.end_us());
        trace.bytes += charge;
        trace.spans.push(stored);
        self.used += charge;
        self.spans += 1;
        Ok(evicted)
    }

    /// Removes an evicted trace from every index and the budget.
    fn forget(&mut self, trace: Trace) {
        self.ids.remove(&trace.id);
        self.used -= trace.bytes;
        self.spans -= trace.spans.len() as u64;
        for span in &trace.spans {
            if let Some(entry) = self.services.get_mut(&*span.service) {
                entry.spans -= 1;
                entry.errors -= u64::from(span.error);
                unpost(&mut entry.traces, trace.seq);
                if let Some(op) = entry.operations.get_mut(&*span.operation) {
                    op.spans -= 1;
                    op.errors -= u64::from(span.error);
                    unpost(&mut op.traces, trace.seq);
                    if op.spans == 0 {
                        entry.operations.remove(&*span.operation);
                    }
                }
                if entry.spans == 0 {
                    self.services.remove(&*span.service);
                }
            }
            for hash in indexed_tags(&span.span) {
                if let Some(postings) = self.tags.get_mut(&hash) {
                    unpost(postings, trace.seq);
                    if postings.is_empty() {
                        self.tags.remove(&hash);
                    }
                }
            }
        }
    }

    /// The trace with `id`.
    pub fn trace(&self, id: &TraceId) -> Option<&Trace> {
        self.ids.get(id).and_then(|seq| self.traces.get(seq))
    }
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

/// Parses a trace id given in hex: 32 digits, or 16 (a 64-bit id, padded on the left).
pub fn parse_trace_id(s: &str) -> Option<TraceId> {
    if !(s.len() == 32 || s.len() == 16) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    let offset = 16 - s.len() / 2;
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        id[offset + i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(id)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

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
        Some(Value::KvlistValue(l)) => Json::Object(
            l.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map_or(Json::Null, value_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
        Some(Value::StringValueStrindex(i)) => Json::from(*i),
        None => Json::Null,
    }
}

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

pub(crate) fn times(span: &Span) -> (u64, u64) {
    let start = span.start_time_unix_nano / 1000;
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    (start, duration)
}

/// A generous estimate of the heap a stored span occupies, with its slot and index postings.
fn footprint(span: &Span) -> usize {
    fn any(v: &AnyValue) -> usize {
        match &v.value {
            Some(Value::StringValue(s)) => s.capacity(),
            Some(Value::BytesValue(b)) => b.capacity(),
            Some(Value::ArrayValue(a)) => {
                a.values.capacity() * size_of::<AnyValue>()
                    + a.values.iter().map(any).sum::<usize>()
            }
            Some(Value::KvlistValue(l)) => kvs(&l.values),
            _ => 0,
        }
    }
    fn kvs(list: &[KeyValue]) -> usize {
        size_of_val(list)
            + list
                .iter()
                .map(|kv| kv.key.capacity() + kv.value.as_ref().map_or(0, any))
                .sum::<usize>()
    }
    let events: usize = span
        .events
        .iter()
        .map(|e: &Event| {
            e.name.capacity()
                + kvs(&e.attributes)
                + e.attributes.capacity().saturating_sub(e.attributes.len()) * size_of::<KeyValue>()
        })
        .sum();
    let links: usize = span
        .links
        .iter()
        .map(|l: &Link| {
            l.trace_id.capacity()
                + l.span_id.capacity()
                + l.trace_state.capacity()
                + kvs(&l.attributes)
        })
        .sum();
    SPAN_OVERHEAD
        + span.trace_id.capacity()
        + span.span_id.capacity()
        + span.parent_span_id.capacity()
        + span.trace_state.capacity()
        + span.name.capacity()
        + kvs(&span.attributes)
        + span
            .attributes
            .capacity()
            .saturating_sub(span.attributes.len())
            * size_of::<KeyValue>()
        + span.events.capacity() * size_of::<Event>()
        + events
        + span.links.capacity() * size_of::<Link>()
        + links
        + span.status.as_ref().map_or(0, |s| s.message.capacity())
}
