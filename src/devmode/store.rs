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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, DefaultHasher, Hasher};
use std::mem::size_of;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde::Serialize;

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
const SMALL_TRACE: usize = 64;
/// Attribute values longer than this are not indexed (ids, URLs with query strings, bodies);
/// they still match a `tag` filter, through a scan.
const MAX_INDEXED_VALUE: usize = 256;

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
    start_us: u64,
    end_us: u64,
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

    fn summary(&self, matched: usize) -> TraceSummary {
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

/// A span predicate: every given filter must hold for the same span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanQuery {
    /// Exact service name.
    pub service: Option<String>,
    /// Exact operation name.
    pub operation: Option<String>,
    /// Attributes `key` whose value, as text, equals `value`.
    pub tags: Vec<(String, String)>,
    /// Smallest duration, inclusive.
    pub min_duration_us: Option<u64>,
    /// Largest duration, inclusive.
    pub max_duration_us: Option<u64>,
    /// Only error spans.
    pub errors_only: bool,
    /// Earliest span start, inclusive.
    pub start_us: Option<u64>,
    /// Latest span start, inclusive.
    pub end_us: Option<u64>,
}

impl SpanQuery {
    /// Whether `span` satisfies every filter.
    pub fn matches(&self, span: &StoredSpan) -> bool {
        self.service.as_deref().is_none_or(|s| *span.service == *s)
            && self
                .operation
                .as_deref()
                .is_none_or(|o| *span.operation == *o)
            && self.min_duration_us.is_none_or(|m| span.duration_us >= m)
            && self.max_duration_us.is_none_or(|m| span.duration_us <= m)
            && (!self.errors_only || span.error)
            && self.start_us.is_none_or(|t| span.start_us >= t)
            && self.end_us.is_none_or(|t| span.start_us <= t)
            && self.tags.iter().all(|(key, want)| {
                span.span
                    .attributes
                    .iter()
                    .any(|kv| kv.key == *key && kv.value.as_ref().is_some_and(|v| text(v) == *want))
            })
    }

    /// Whether a trace spanning `start..=end` can hold a span that passes the time window.
    fn window_overlaps(&self, trace: &Trace) -> bool {
        self.start_us.is_none_or(|t| trace.end_us >= t)
            && self.end_us.is_none_or(|t| trace.start_us <= t)
    }
}

/// One row of the service directory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Spans stored.
    pub spans: u64,
    /// Error spans stored.
    pub errors: u64,
    /// `errors / spans`.
    pub error_rate: f64,
    /// Median duration.
    pub p50_us: Option<u64>,
    /// 95th percentile duration.
    pub p95_us: Option<u64>,
    /// 99th percentile duration.
    pub p99_us: Option<u64>,
    /// Distinct operations.
    pub operations: usize,
}

/// One operation of a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperationSummary {
    /// Operation (span) name.
    pub name: String,
    /// Spans stored.
    pub spans: u64,
    /// Error spans stored.
    pub errors: u64,
    /// Median duration.
    pub p50_us: Option<u64>,
    /// 95th percentile duration.
    pub p95_us: Option<u64>,
    /// 99th percentile duration.
    pub p99_us: Option<u64>,
}

/// One row of a trace search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceSummary {
    /// 32 hex digits.
    pub trace_id: String,
    /// Service of the root span.
    pub root_service: String,
    /// Operation of the root span.
    pub root_operation: String,
    /// Earliest span start.
    pub start_us: u64,
    /// Latest end minus earliest start.
    pub duration_us: u64,
    /// Spans in the trace.
    pub spans: usize,
    /// Distinct services, sorted.
    pub services: Vec<String>,
    /// Error spans in the trace.
    pub errors: usize,
    /// Spans of the trace that matched the query.
    pub matched: usize,
}

/// One histogram bucket: durations `lo_us..=hi_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Smallest duration, inclusive.
    pub lo_us: u64,
    /// Largest duration, inclusive.
    pub hi_us: u64,
    /// Matching spans in it.
    pub count: u64,
}

/// The latency distribution of the spans matching a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Matching spans.
    pub spans: u64,
    /// Contiguous linear buckets from the smallest to the largest duration.
    pub buckets: Vec<Bucket>,
    /// Median.
    pub p50_us: Option<u64>,
    /// 95th percentile.
    pub p95_us: Option<u64>,
    /// 99th percentile.
    pub p99_us: Option<u64>,
}

/// Calls from one service to another: a span of `child` whose parent span is in `parent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// Calling service.
    pub parent: String,
    /// Called service.
    pub child: String,
    /// Parent/child span pairs seen.
    pub calls: u64,
}

/// A new span, as the live tail shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpanSummary {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// Hex, `None` for a root.
    pub parent_span_id: Option<String>,
    /// Service name.
    pub service: String,
    /// Operation name.
    pub operation: String,
    /// Start, µs since the epoch.
    pub start_us: u64,
    /// Duration, µs.
    pub duration_us: u64,
    /// Span kind name.
    pub kind: &'static str,
    /// Error span.
    pub error: bool,
}

impl SpanSummary {
    /// The summary of `span` of `service`.
    pub fn of(service: &str, span: &Span) -> SpanSummary {
        let (start_us, duration_us) = times(span);
        SpanSummary {
            trace_id: trace_id_of(&span.trace_id)
                .map_or_else(|| hex(&span.trace_id), |id| hex(&id)),
            span_id: hex(&span.span_id),
            parent_span_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
            service: service.to_owned(),
            operation: span.name.clone(),
            start_us,
            duration_us,
            kind: kind_name(span.kind),
            error: is_error(span),
        }
    }
}

/// Sequence numbers of traces, ascending. New traces come last and eviction always takes the
/// oldest trace, which is then the front of every list holding it: both ends are O(1).
type Postings = VecDeque<u64>;

fn post(list: &mut Postings, seq: u64) {
    match list.back() {
        Some(&last) if last == seq => {}
        Some(&last) if last > seq => {
            if let Err(at) = list.binary_search(&seq) {
                list.insert(at, seq);
            }
        }
        _ => list.push_back(seq),
    }
}

fn unpost(list: &mut Postings, seq: u64) {
    if list.front() == Some(&seq) {
        list.pop_front();
    } else if let Ok(at) = list.binary_search(&seq) {
        list.remove(at);
    }
}

/// The tag index is keyed by hashes already: do not hash them again.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug, Default)]
struct OperationEntry {
    spans: u64,
    errors: u64,
    traces: Postings,
}

#[derive(Debug, Default)]
struct ServiceEntry {
    spans: u64,
    errors: u64,
    traces: Postings,
    operations: BTreeMap<Arc<str>, OperationEntry>,
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

    /// Traces that may hold spans matching `query`, newest arrival first: the postings of the
    /// most selective indexed filter, or every trace.
    fn candidates<'a>(&'a self, query: &'a SpanQuery) -> Box<dyn Iterator<Item = &'a Trace> + 'a> {
        let mut lists: Vec<Option<&Postings>> = Vec::new();
        if let Some(service) = &query.service {
            let entry = self.services.get(service.as_str());
            lists.push(entry.map(|e| &e.traces));
            if let Some(operation) = &query.operation {
                lists.push(
                    entry.and_then(|e| e.operations.get(operation.as_str()).map(|o| &o.traces)),
                );
            }
        }
        for (key, value) in &query.tags {
            if value.len() <= MAX_INDEXED_VALUE {
                lists.push(self.tags.get(&tag_hash(key, value)));
            }
        }
        if lists.iter().any(Option::is_none) {
            return Box::new(std::iter::empty());
        }
        let traces = |postings: &'a Postings| {
            postings
                .iter()
                .rev()
                .filter_map(move |seq| self.traces.get(seq))
        };
        let smallest = lists
            .into_iter()
            .flatten()
            .min_by_key(|postings| postings.len());
        // An index that keeps most traces is slower than a sequential scan of them all.
        let all: Box<dyn Iterator<Item = &'a Trace> + 'a> = match smallest {
            Some(postings) if postings.len() * 4 < self.traces.len() => Box::new(traces(postings)),
            _ => Box::new(self.traces.values().rev()),
        };
        Box::new(all.filter(move |trace| query.window_overlaps(trace)))
    }

    /// Spans matching `query`, with their traces.
    pub fn matching_spans<'a>(
        &'a self,
        query: &'a SpanQuery,
    ) -> impl Iterator<Item = (&'a Trace, &'a StoredSpan)> + 'a {
        self.candidates(query).flat_map(move |trace| {
            trace
                .spans
                .iter()
                .filter(move |span| query.matches(span))
                .map(move |span| (trace, span))
        })
    }

    /// Traces holding a span that matches `query`, newest first (by start), at most `limit`.
    pub fn traces(&self, query: &SpanQuery, limit: usize) -> Vec<TraceSummary> {
        let mut hits: Vec<(u64, u64, usize)> = self
            .candidates(query)
            .filter_map(|trace| {
                let matched = trace.spans.iter().filter(|s| query.matches(s)).count();
                (matched > 0).then_some((trace.start_us, trace.seq, matched))
            })
            .collect();
        hits.sort_unstable_by_key(|&(start, seq, _)| std::cmp::Reverse((start, seq)));
        hits.truncate(limit);
        hits.into_iter()
            .filter_map(|(_, seq, matched)| self.traces.get(&seq).map(|t| t.summary(matched)))
            .collect()
    }

    /// The latency distribution of the spans matching `query`, in at most `buckets` buckets.
    pub fn latency(&self, query: &SpanQuery, buckets: usize) -> Latency {
        let mut durations: Vec<u64> = self
            .matching_spans(query)
            .map(|(_, span)| span.duration_us)
            .collect();
        durations.sort_unstable();
        let (Some(&lo), Some(&hi)) = (durations.first(), durations.last()) else {
            return Latency {
                spans: 0,
                buckets: Vec::new(),
                p50_us: None,
                p95_us: None,
                p99_us: None,
            };
        };
        let n = buckets.max(1) as u64;
        let range = hi - lo + 1;
        let width = range.div_ceil(n).max(1);
        let count = range.div_ceil(width);
        let mut out: Vec<Bucket> = (0..count)
            .map(|i| Bucket {
                lo_us: lo + i * width,
                hi_us: (lo + (i + 1) * width - 1).min(hi),
                count: 0,
            })
            .collect();
        for d in &durations {
            let i = ((d - lo) / width) as usize;
            if let Some(bucket) = out.get_mut(i) {
                bucket.count += 1;
            }
        }
        Latency {
            spans: durations.len() as u64,
            buckets: out,
            p50_us: percentile(&durations, 50),
            p95_us: percentile(&durations, 95),
            p99_us: percentile(&durations, 99),
        }
    }

    /// Every service, sorted by name, with counts and latency percentiles.
    pub fn services(&self) -> Vec<ServiceSummary> {
        // Services are interned, so the pointer identifies one.
        let mut durations: HashMap<*const u8, Vec<u64>> = HashMap::new();
        for trace in self.traces.values() {
            for span in &trace.spans {
                durations
                    .entry(Arc::as_ptr(&span.service).cast())
                    .or_default()
                    .push(span.duration_us);
            }
        }
        self.services
            .iter()
            .map(|(name, entry)| {
                let mut d = durations
                    .remove(&Arc::as_ptr(name).cast())
                    .unwrap_or_default();
                d.sort_unstable();
                ServiceSummary {
                    name: name.to_string(),
                    spans: entry.spans,
                    errors: entry.errors,
                    error_rate: if entry.spans == 0 {
                        0.0
                    } else {
                        entry.errors as f64 / entry.spans as f64
                    },
                    p50_us: percentile(&d, 50),
                    p95_us: percentile(&d, 95),
                    p99_us: percentile(&d, 99),
                    operations: entry.operations.len(),
                }
            })
            .collect()
    }

    /// The operations of `service`, sorted by name; `None` if the service is unknown.
    pub fn operations(&self, service: &str) -> Option<Vec<OperationSummary>> {
        let entry = self.services.get(service)?;
        let mut durations: HashMap<&str, Vec<u64>> = HashMap::new();
        for seq in &entry.traces {
            let Some(trace) = self.traces.get(seq) else {
                continue;
            };
            for span in trace.spans.iter().filter(|s| *s.service == *service) {
                durations
                    .entry(&span.operation)
                    .or_default()
                    .push(span.duration_us);
            }
        }
        Some(
            entry
                .operations
                .iter()
                .map(|(name, op)| {
                    let mut d = durations.remove(&**name).unwrap_or_default();
                    d.sort_unstable();
                    OperationSummary {
                        name: name.to_string(),
                        spans: op.spans,
                        errors: op.errors,
                        p50_us: percentile(&d, 50),
                        p95_us: percentile(&d, 95),
                        p99_us: percentile(&d, 99),
                    }
                })
                .collect(),
        )
    }

    /// Calls between services, from parent/child spans of different services, sorted.
    pub fn dependencies(&self) -> Vec<Edge> {
        // Services are interned, so the pointer identifies one.
        let mut edges: HashMap<(*const u8, *const u8), (&str, &str, u64)> = HashMap::new();
        let mut by_id: HashMap<&[u8], &Arc<str>> = HashMap::new();
        for trace in self.traces.values() {
            // Small traces (the usual case) look parents up by a scan, not a map.
            let large = trace.spans.len() > SMALL_TRACE;
            if large {
                by_id.clear();
                by_id.extend(
                    trace
                        .spans
                        .iter()
                        .map(|s| (&s.span.span_id[..], &s.service)),
                );
            }
            for span in &trace.spans {
                let wanted = &span.span.parent_span_id[..];
                if wanted.is_empty() {
                    continue;
                }
                let parent = if large {
                    by_id.get(wanted).copied()
                } else {
                    trace
                        .spans
                        .iter()
                        .find(|p| p.span.span_id == wanted)
                        .map(|p| &p.service)
                };
                if let Some(parent) = parent
                    && !Arc::ptr_eq(parent, &span.service)
                {
                    let key = (
                        Arc::as_ptr(parent).cast(),
                        Arc::as_ptr(&span.service).cast(),
                    );
                    edges.entry(key).or_insert((&**parent, &*span.service, 0)).2 += 1;
                }
            }
        }
        let mut edges: Vec<Edge> = edges
            .into_values()
            .map(|(parent, child, calls)| Edge {
                parent: parent.to_owned(),
                child: child.to_owned(),
                calls,
            })
            .collect();
        edges.sort_by(|a, b| (&a.parent, &a.child).cmp(&(&b.parent, &b.child)));
        edges
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

fn is_error(span: &Span) -> bool {
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

fn times(span: &Span) -> (u64, u64) {
    let start = span.start_time_unix_nano / 1000;
    let duration = span
        .end_time_unix_nano
        .saturating_sub(span.start_time_unix_nano)
        / 1000;
    (start, duration)
}

/// Feeds text into a hasher without building a `String`.
struct HashText<'a>(&'a mut DefaultHasher);

impl std::fmt::Write for HashText<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// The index key of attribute `key` whose value reads `value` (see [`text`]).
fn tag_hash(key: &str, value: &str) -> u64 {
    let mut h = tag_hasher(key);
    h.write(value.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

fn tag_hasher(key: &str) -> DefaultHasher {
    let mut h = DefaultHasher::new();
    h.write(key.as_bytes());
    h.write_u8(0xff);
    h
}

/// [`tag_hash`] of an attribute, computed without allocating; `None` for values that are not
/// indexed (arrays, maps, bytes, text longer than [`MAX_INDEXED_VALUE`]).
fn attribute_hash(kv: &KeyValue) -> Option<u64> {
    use std::fmt::Write;
    let value = kv.value.as_ref()?;
    let mut h = tag_hasher(&kv.key);
    match &value.value {
        Some(Value::StringValue(s)) if s.len() <= MAX_INDEXED_VALUE => h.write(s.as_bytes()),
        Some(Value::BoolValue(b)) => h.write(if *b { b"true" } else { b"false" }),
        Some(Value::IntValue(i)) => write!(HashText(&mut h), "{i}").ok()?,
        Some(Value::DoubleValue(d)) => {
            if d.to_string().len() > MAX_INDEXED_VALUE {
                return None;
            }
            write!(HashText(&mut h), "{d}").ok()?
        }
        Some(Value::StringValueStrindex(i)) => write!(HashText(&mut h), "{i}").ok()?,
        _ => return None,
    }
    h.write_u8(0xff);
    Some(h.finish())
}

/// Index keys of `span`'s attributes: scalar values no longer than [`MAX_INDEXED_VALUE`].
fn indexed_tags(span: &Span) -> Vec<u64> {
    let mut out: Vec<u64> = span.attributes.iter().filter_map(attribute_hash).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as u64 * p).div_ceil(100).max(1) as usize;
    sorted.get(rank - 1).copied()
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

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::trace::v1::Status;
    use proptest::prelude::*;

    use super::*;

    const MS: u64 = 1_000_000;

    fn attr(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    /// A span of trace `trace`, id `id` (parent `parent`, 0 = root), starting at `start_ms`.
    fn span(trace: u8, id: u8, parent: u8, name: &str, start_ms: u64, dur_us: u64) -> Span {
        let mut trace_id = vec![0; 16];
        trace_id[0] = 0xab;
        trace_id[15] = trace;
        Span {
            trace_id,
            span_id: vec![0, 0, 0, 0, 0, 0, trace, id],
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                vec![0, 0, 0, 0, 0, 0, trace, parent]
            },
            name: name.to_owned(),
            kind: 2,
            start_time_unix_nano: start_ms * MS,
            end_time_unix_nano: start_ms * MS + dur_us * 1000,
            ..Default::default()
        }
    }

    fn bookinfo(store: &mut Store, trace: u8, start_ms: u64, ratings_fail: bool) {
        let mut root = span(trace, 1, 0, "GET /productpage", start_ms, 5_000);
        root.attributes
            .push(attr("http.status_code", Value::IntValue(200)));
        store.insert("productpage", root).unwrap();
        store
            .insert(
                "details",
                span(trace, 2, 1, "GET /details", start_ms + 1, 800),
            )
            .unwrap();
        store
            .insert(
                "reviews",
                span(trace, 3, 1, "GET /reviews", start_ms + 2, 2_500),
            )
            .unwrap();
        let mut ratings = span(trace, 4, 3, "GET /ratings", start_ms + 3, 1_000);
        if ratings_fail {
            ratings.status = Some(Status {
                code: StatusCode::Error as i32,
                message: "boom".into(),
            });
            ratings
                .attributes
                .push(attr("http.status_code", Value::IntValue(500)));
        }
        store.insert("ratings", ratings).unwrap();
    }

    fn ids(traces: &[TraceSummary]) -> Vec<u8> {
        traces
            .iter()
            .map(|t| u8::from_str_radix(&t.trace_id[30..], 16).unwrap())
            .collect()
    }

    #[test]
    fn services_operations_and_errors() {
        let mut store = Store::new(1 << 20);
        for t in 1..=4 {
            bookinfo(&mut store, t, u64::from(t) * 100, t == 2);
        }
        let services = store.services();
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["details", "productpage", "ratings", "reviews"]);
        let ratings = &services[2];
        assert_eq!((ratings.spans, ratings.errors), (4, 1));
        assert_eq!(ratings.error_rate, 0.25);
        assert_eq!(ratings.p50_us, Some(1_000));
        assert_eq!(services[1].operations, 1);
        let ops = store.operations("reviews").unwrap();
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].name.as_str(), ops[0].spans), ("GET /reviews", 4));
        assert!(store.operations("nope").is_none());
    }

    #[test]
    fn trace_search_filters_and_orders_newest_first() {
        let mut store = Store::new(1 << 20);
        for t in 1..=5 {
            bookinfo(&mut store, t, u64::from(t) * 100, t == 2 || t == 4);
        }
        let all = store.traces(&SpanQuery::default(), 50);
        assert_eq!(ids(&all), [5, 4, 3, 2, 1]);
        assert_eq!(all[0].spans, 4);
        assert_eq!(all[0].root_service, "productpage");
        assert_eq!(all[0].root_operation, "GET /productpage");
        assert_eq!(
            all[0].services,
            ["details", "productpage", "ratings", "reviews"]
        );
        assert_eq!(all[0].duration_us, 5_000);
        assert_eq!(ids(&store.traces(&SpanQuery::default(), 2)), [5, 4]);

        let q = |f: &dyn Fn(&mut SpanQuery)| {
            let mut q = SpanQuery::default();
            f(&mut q);
            ids(&store.traces(&q, 50))
        };
        assert_eq!(q(&|q| q.errors_only = true), [4, 2]);
        assert_eq!(
            q(&|q| q.tags = vec![("http.status_code".into(), "500".into())]),
            [4, 2]
        );
        assert_eq!(
            q(&|q| q.tags = vec![("http.status_code".into(), "200".into())]),
            [5, 4, 3, 2, 1]
        );
        // Filters hold for the same span: productpage never has a 500.
        assert_eq!(
            q(&|q| {
                q.service = Some("productpage".into());
                q.tags = vec![("http.status_code".into(), "500".into())];
            }),
            Vec::<u8>::new()
        );
        assert_eq!(
            q(&|q| {
                q.service = Some("reviews".into());
                q.operation = Some("GET /reviews".into());
            }),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            q(&|q| q.operation = Some("GET /reviews".into())),
            [5, 4, 3, 2, 1]
        );
        assert_eq!(
            q(&|q| {
                q.service = Some("reviews".into());
                q.operation = Some("GET /ratings".into());
            }),
            Vec::<u8>::new()
        );
        assert_eq!(q(&|q| q.service = Some("nope".into())), Vec::<u8>::new());
        assert_eq!(q(&|q| q.min_duration_us = Some(5_000)), [5, 4, 3, 2, 1]);
        assert_eq!(
            q(&|q| {
                q.min_duration_us = Some(801);
                q.max_duration_us = Some(999);
            }),
            Vec::<u8>::new()
        );
        // Time window on span starts (ms -> µs): traces 2 and 3 start at 200 and 300 ms.
        assert_eq!(
            q(&|q| {
                q.start_us = Some(200_000);
                q.end_us = Some(300_000);
            }),
            [3, 2]
        );
        let matched = store.traces(
            &SpanQuery {
                service: Some("details".into()),
                ..Default::default()
            },
            1,
        );
        assert_eq!(matched[0].matched, 1);
    }

    #[test]
    fn latency_buckets_are_contiguous_inclusive_and_narrow_exactly() {
        let mut store = Store::new(1 << 20);
        for t in 1..=10 {
            bookinfo(&mut store, t, u64::from(t) * 100, false);
        }
        let latency = store.latency(&SpanQuery::default(), 7);
        assert_eq!(latency.spans, 40);
        assert!(latency.buckets.len() <= 7);
        assert_eq!(latency.buckets.iter().map(|b| b.count).sum::<u64>(), 40);
        assert_eq!(latency.buckets[0].lo_us, 800);
        assert_eq!(latency.buckets.last().unwrap().hi_us, 5_000);
        for pair in latency.buckets.windows(2) {
            assert_eq!(pair[1].lo_us, pair[0].hi_us + 1);
        }
        for bucket in &latency.buckets {
            let narrowed = SpanQuery {
                min_duration_us: Some(bucket.lo_us),
                max_duration_us: Some(bucket.hi_us),
                ..Default::default()
            };
            assert_eq!(store.matching_spans(&narrowed).count() as u64, bucket.count);
        }
        // One distinct duration: a single one-microsecond bucket.
        let one = store.latency(
            &SpanQuery {
                service: Some("details".into()),
                ..Default::default()
            },
            20,
        );
        assert_eq!(
            one.buckets,
            [Bucket {
                lo_us: 800,
                hi_us: 800,
                count: 10
            }]
        );
        let none = store.latency(
            &SpanQuery {
                service: Some("nope".into()),
                ..Default::default()
            },
            20,
        );
        assert_eq!((none.spans, none.buckets.len(), none.p50_us), (0, 0, None));
    }

    #[test]
    fn dependencies_follow_parent_links_across_services() {
        let mut store = Store::new(1 << 20);
        for t in 1..=3 {
            bookinfo(&mut store, t, u64::from(t) * 100, false);
        }
        // A same-service child is not an edge.
        store
            .insert("productpage", span(1, 9, 1, "render", 101, 10))
            .unwrap();
        let edges: Vec<(String, String, u64)> = store
            .dependencies()
            .into_iter()
            .map(|e| (e.parent, e.child, e.calls))
            .collect();
        assert_eq!(
            edges,
            [
                ("productpage".into(), "details".into(), 3),
                ("productpage".into(), "reviews".into(), 3),
                ("reviews".into(), "ratings".into(), 3),
            ]
        );
    }

    #[test]
    fn evicts_whole_oldest_traces_within_the_budget() {
        let mut store = Store::new(64 << 10);
        let mut total_evicted = 0;
        for t in 0..=255u8 {
            for id in 1..=4 {
                let evicted = store
                    .insert("svc", span(t, id, id - 1, "op", u64::from(t), 10))
                    .unwrap();
                total_evicted += evicted.spans;
                assert!(store.stats().used_bytes <= 64 << 10);
            }
        }
        let stats = store.stats();
        assert!(stats.evicted_traces > 0);
        assert_eq!(stats.evicted_spans, total_evicted);
        assert_eq!(stats.spans + stats.evicted_spans, 256 * 4);
        let kept = store.traces(&SpanQuery::default(), MAX);
        // The newest traces survive, each whole (the last one may still be growing).
        assert_eq!(ids(&kept)[0], 255);
        let mut expected: Vec<u8> = (256 - kept.len()..256).rev().map(|t| t as u8).collect();
        expected.truncate(kept.len());
        assert_eq!(ids(&kept), expected);
        assert!(kept.iter().all(|t| t.spans == 4));
        assert_eq!(store.services()[0].spans, stats.spans);
    }

    const MAX: usize = usize::MAX;

    #[test]
    fn a_span_returning_to_an_evicted_trace_starts_it_again() {
        let mut store = Store::new(64 << 10);
        store.insert("svc", span(1, 1, 0, "first", 0, 10)).unwrap();
        for t in 2..=255u8 {
            store.insert("svc", span(t, 1, 0, "op", 1, 10)).unwrap();
        }
        assert!(
            store
                .trace(&trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap())
                .is_none()
        );
        store.insert("svc", span(1, 2, 1, "late", 2, 10)).unwrap();
        let id = trace_id_of(&span(1, 1, 0, "", 0, 0).trace_id).unwrap();
        assert_eq!(store.trace(&id).unwrap().spans.len(), 1);
        assert!(store.stats().used_bytes <= 64 << 10);
    }

    #[test]
    fn refuses_bad_ids_and_oversized_spans() {
        let mut store = Store::new(4 << 10);
        let mut bad = span(1, 1, 0, "x", 0, 1);
        bad.trace_id = vec![1, 2, 3];
        assert_eq!(store.insert("s", bad), Err(Rejected::InvalidTraceId));
        let mut zero = span(1, 1, 0, "x", 0, 1);
        zero.trace_id = vec![0; 16];
        assert_eq!(store.insert("s", zero), Err(Rejected::InvalidTraceId));
        let mut huge = span(1, 1, 0, "x", 0, 1);
        huge.attributes
            .push(attr("body", Value::StringValue("x".repeat(8 << 10))));
        assert_eq!(store.insert("s", huge), Err(Rejected::TooLarge));
        assert_eq!(store.stats().spans, 0);
        // A 64-bit id is padded on the left.
        let mut short = span(1, 1, 0, "x", 0, 1);
        short.trace_id = vec![0, 0, 0, 0, 0, 0, 0, 7];
        store.insert("s", short).unwrap();
        assert!(
            store
                .trace(&parse_trace_id("0000000000000007").unwrap())
                .is_some()
        );
    }

    #[test]
    fn attribute_hashes_are_the_hashes_queries_look_up() {
        for value in [
            Value::StringValue("v".into()),
            Value::BoolValue(true),
            Value::BoolValue(false),
            Value::IntValue(-42),
            Value::DoubleValue(0.25),
            Value::StringValueStrindex(3),
        ] {
            let kv = attr("k", value);
            let text = text(kv.value.as_ref().unwrap()).into_owned();
            assert_eq!(attribute_hash(&kv), Some(tag_hash("k", &text)), "{text}");
            assert_ne!(attribute_hash(&kv), Some(tag_hash("kk", &text)));
        }
        let long = attr("k", Value::StringValue("x".repeat(MAX_INDEXED_VALUE + 1)));
        assert_eq!(attribute_hash(&long), None);
        assert_eq!(attribute_hash(&attr("k", Value::BytesValue(vec![1]))), None);
    }

    #[test]
    fn postings_stay_sorted_and_drop_the_oldest_from_the_front() {
        let mut list = Postings::new();
        for seq in [1, 3, 3, 2, 5, 4, 5] {
            post(&mut list, seq);
        }
        assert_eq!(list, [1, 2, 3, 4, 5]);
        unpost(&mut list, 1);
        unpost(&mut list, 4);
        unpost(&mut list, 9);
        assert_eq!(list, [2, 3, 5]);
    }

    #[test]
    fn trace_ids_parse_from_hex() {
        let mut want = [0u8; 16];
        want[15] = 0xab;
        assert_eq!(
            parse_trace_id("000000000000000000000000000000ab"),
            Some(want)
        );
        assert_eq!(parse_trace_id("00000000000000AB"), Some(want));
        for bad in [
            "",
            "ab",
            "zz000000000000000000000000000000",
            "é0000000000000000000000000000ab",
        ] {
            assert_eq!(parse_trace_id(bad), None, "{bad:?}");
        }
    }

    fn arb_span() -> impl Strategy<Value = (u8, Span)> {
        (
            0u8..4,
            1u8..40,
            0u8..6,
            1u8..6,
            prop::sample::select(vec!["a", "b", "c"]),
            0u64..50,
            0u64..5_000,
            prop::option::of(prop::sample::select(vec!["200", "404", "500"])),
            any::<bool>(),
        )
            .prop_map(|(service, trace, id, parent, op, start, dur, code, err)| {
                let mut s = span(
                    trace,
                    id + 1,
                    if parent > id { 0 } else { parent },
                    op,
                    start,
                    dur,
                );
                if let Some(code) = code {
                    s.attributes
                        .push(attr("http.status_code", Value::StringValue(code.into())));
                }
                if err {
                    s.attributes.push(attr("error", Value::BoolValue(true)));
                }
                (service, s)
            })
    }

    fn arb_query() -> impl Strategy<Value = SpanQuery> {
        (
            prop::option::of(prop::sample::select(vec!["s0", "s1", "s2", "s3", "sx"])),
            prop::option::of(prop::sample::select(vec!["a", "b", "x"])),
            prop::option::of(prop::sample::select(vec!["200", "404", "500"])),
            prop::option::of(0u64..5_000),
            any::<bool>(),
            prop::option::of(0u64..50_000),
        )
            .prop_map(
                |(service, operation, code, min, errors_only, start)| SpanQuery {
                    service: service.map(str::to_owned),
                    operation: operation.map(str::to_owned),
                    tags: code
                        .map(|c| vec![("http.status_code".to_owned(), c.to_owned())])
                        .unwrap_or_default(),
                    min_duration_us: min,
                    max_duration_us: None,
                    errors_only,
                    start_us: start,
                    end_us: None,
                },
            )
    }

    proptest! {
        /// Index-driven search finds exactly what a scan of every stored span finds, and the
        /// budget holds after every insert.
        #[test]
        fn indexes_agree_with_a_full_scan(
            spans in prop::collection::vec(arb_span(), 1..300),
            queries in prop::collection::vec(arb_query(), 1..10),
            limit_kib in 16usize..256,
        ) {
            let mut store = Store::new(limit_kib << 10);
            for (service, span) in spans {
                let _ = store.insert(&format!("s{service}"), span);
                prop_assert!(store.stats().used_bytes <= limit_kib << 10);
            }
            for query in queries {
                let mut scanned: Vec<String> = store
                    .traces
                    .values()
                    .filter(|t| t.spans.iter().any(|s| query.matches(s)))
                    .map(Trace::id_hex)
                    .collect();
                let mut found: Vec<String> =
                    store.traces(&query, MAX).into_iter().map(|t| t.trace_id).collect();
                scanned.sort();
                found.sort();
                prop_assert_eq!(found, scanned, "{:?}", query);
            }
            let counted: u64 = store.services().iter().map(|s| s.spans).sum();
            prop_assert_eq!(counted, store.stats().spans);
        }
    }
}
