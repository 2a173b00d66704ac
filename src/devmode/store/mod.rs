//! The developer-mode trace store: OTLP spans (the translation layer's model) kept in memory,
//! grouped by trace and indexed by service, operation, tag and link, within a byte budget.
//!
//! Spans are held compactly ([`StoredSpan`]: plain numbers, interned names and resources, the
//! rest as its protobuf encoding). The budget is charged with what each span, trace and index
//! entry really occupies on the heap plus growth slack, and when a new span does not fit, whole
//! traces are evicted, oldest first (by the arrival of their first span), so a trace is never
//! shown with holes. A pinned trace is skipped by eviction (a few, within a quarter of the
//! budget). A span arriving again (same trace id and span id: an exporter's retry) is refused
//! as a duplicate. Queries answer the JSON API: span predicates over candidate traces taken
//! from the smallest matching index, summaries, latency histograms, service dependencies.
//!
//! A plain data structure: no I/O, no locks, no metrics, no logging. Its owner (`devmode`)
//! serialises writers and counts what [`Store::insert`] reports.

mod index;
mod query;
mod span;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::mem::size_of;
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde::Serialize;

use index::{Postings, Prehashed, ServiceEntry, indexed_tags, link_hash};
pub use query::{
    Bucket, Edge, Latency, OperationSummary, Scale, ServiceSummary, SpanQuery, SpanSummary,
    TraceSummary,
};
pub use span::{
    Process, StoredSpan, TraceId, UNKNOWN_SERVICE, attributes_json, hex, kind_name, parse_trace_id,
    span_id_of, text, trace_id_of, value_json,
};

/// Charged per span besides its encoded rest: its slot in the trace's `Vec` with doubling
/// slack, and the allocator's overhead of the rest.
const SPAN_OVERHEAD: usize = 2 * size_of::<StoredSpan>() + 16;
/// Charged per new entry of a posting list or a trace's own list of its index keys (one `u64`
/// in a doubling buffer).
const POSTING: usize = 16;
/// Charged per new key of the tag index: a hash-map slot with slack and the first buffer of its
/// posting list.
const INDEX_KEY: usize = 128;
/// Charged per span of a large trace for its span-id map (a hash-map slot with slack).
const ID_SLOT: usize = 32;
/// Charged per trace: its entry in the arrival map and the id map.
const TRACE_OVERHEAD: usize = 2 * size_of::<Trace>() + 128;
/// Traces with at most this many spans find a span by a scan rather than a map.
pub(crate) const SMALL_TRACE: usize = 64;
/// Attribute values longer than this are not indexed (ids, URLs with query strings, bodies);
/// they still match a `tag` filter, through a scan.
pub(crate) const MAX_INDEXED_VALUE: usize = 256;
/// Traces that can be pinned at once.
pub const MAX_PINNED: usize = 20;

/// All stored spans of one trace.
#[derive(Debug)]
pub struct Trace {
    /// The trace id.
    pub id: TraceId,
    /// Its spans, in arrival order.
    pub spans: Vec<StoredSpan>,
    /// Whether eviction skips it.
    pub pinned: bool,
    seq: u64,
    start_us: u64,
    end_us: u64,
    /// The latest first-span start of this trace and every older one, as they arrived: an
    /// upper bound on their starts (a start only moves earlier), so a search newest first can
    /// stop early.
    reach_us: u64,
    bytes: usize,
    /// Every index key this trace is posted under (tags and link targets), sorted.
    keys: Vec<u64>,
    /// Span id -> position in `spans`, once the trace is larger than [`SMALL_TRACE`].
    by_id: Option<HashMap<u64, u32>>,
}

impl Trace {
    /// The trace id in lowercase hex (32 digits).
    pub fn id_hex(&self) -> String {
        hex(&self.id)
    }

    /// Earliest span start, µs since the epoch.
    pub fn start_us(&self) -> u64 {
        self.start_us
    }

    /// The span with id `span_id`.
    pub fn span(&self, span_id: u64) -> Option<&StoredSpan> {
        match &self.by_id {
            Some(map) => map.get(&span_id).map(|&i| &self.spans[i as usize]),
            None => self.spans.iter().find(|s| s.span_id == span_id),
        }
    }

    /// The span a trace view starts from: the earliest span whose parent is not in the trace.
    pub fn root(&self) -> Option<&StoredSpan> {
        let ids: HashSet<u64> = self.spans.iter().map(|s| s.span_id).collect();
        self.spans
            .iter()
            .filter(|s| s.parent_span_id == 0 || !ids.contains(&s.parent_span_id))
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
            pinned: self.pinned,
        }
    }

    /// Adds a span, keeping the span-id map of a large trace; returns the bytes charged for
    /// that map.
    fn push(&mut self, span: StoredSpan) -> usize {
        let mut charged = 0;
        if self.by_id.is_none() && self.spans.len() >= SMALL_TRACE {
            let map: HashMap<u64, u32> = (self.spans.iter().enumerate())
                .map(|(i, s)| (s.span_id, i as u32))
                .collect();
            self.by_id = Some(map);
            charged += self.spans.len() * ID_SLOT;
        }
        if let Some(map) = &mut self.by_id {
            map.insert(span.span_id, self.spans.len() as u32);
            charged += ID_SLOT;
        }
        self.start_us = self.start_us.min(span.start_us);
        self.end_us = self.end_us.max(span.end_us());
        self.spans.push(span);
        charged
    }
}

/// Why a span was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The trace id is neither 16 nor 8 bytes, or all zeros.
    #[error("invalid trace id")]
    InvalidTraceId,
    /// The span id is not 8 bytes, or the parent span id neither 8 bytes nor absent.
    #[error("invalid span id")]
    InvalidSpanId,
    /// The trace already holds a span with this id (a retried export).
    #[error("duplicate span")]
    Duplicate,
    /// The span alone is larger than the whole store.
    #[error("span larger than the store")]
    TooLarge,
}

/// Why a trace could not be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The trace is not stored.
    #[error("the trace is not stored (it may have been evicted)")]
    NotFound,
    /// [`MAX_PINNED`] traces are pinned already.
    #[error("{MAX_PINNED} traces are pinned already: unpin one first")]
    TooMany,
    /// Pinned traces would hold more than a quarter of the store.
    #[error("pinned traces would hold more than a quarter of the store: unpin one first")]
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
    /// Traces pinned now.
    pub pinned_traces: u64,
    /// Spans evicted since start.
    pub evicted_spans: u64,
    /// Traces evicted since start.
    pub evicted_traces: u64,
    /// How far back the store reaches: the start of the oldest trace that eviction would take
    /// next (pinned traces aside), µs since the epoch.
    pub oldest_start_us: Option<u64>,
    /// Services with stored spans.
    pub services: u64,
    /// Error spans stored now.
    pub error_spans: u64,
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
    /// Hash of (key, value text), or of a link target -> traces holding such an attribute.
    tags: HashMap<u64, Postings, BuildHasherDefault<Prehashed>>,
    /// Interned resources, by their encoding.
    processes: HashMap<Vec<u8>, Arc<Process>>,
    pinned: usize,
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
            processes: HashMap::new(),
            pinned: 0,
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
            pinned_traces: self.pinned as u64,
            evicted_spans: self.evicted.spans,
            evicted_traces: self.evicted.traces,
            oldest_start_us: self.traces.values().find(|t| !t.pinned).map(|t| t.start_us),
            services: self.services.len() as u64,
            error_spans: self.services.values().map(|s| s.errors).sum(),
        }
    }

    /// The interned process of a resource with these attributes.
    pub fn process(&mut self, attributes: Vec<KeyValue>) -> Arc<Process> {
        let key = opentelemetry_proto::tonic::resource::v1::Resource {
            attributes,
            ..Default::default()
        };
        let encoded = key.encode_to_vec();
        if let Some(process) = self.processes.get(&encoded) {
            return process.clone();
        }
        let process = Arc::new(Process::of(key.attributes));
        // Resources are few; they are charged here and given back when their last span goes.
        self.used += process_bytes(&encoded, &process);
        self.processes.insert(encoded, process.clone());
        process
    }

    /// Stores `span` of a resource known only by its service name (see [`Store::insert_in`]).
    pub fn insert(&mut self, service: &str, span: Span) -> Result<Evicted, Rejected> {
        let process = self.process(vec![KeyValue {
            key: "service.name".into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(
                    opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                        service.to_owned(),
                    ),
                ),
            }),
            ..Default::default()
        }]);
        self.insert_in(&process, span)
    }

    /// Stores `span` sent by `process`, evicting the oldest whole traces while it does not fit.
    pub fn insert_in(
        &mut self,
        process: &Arc<Process>,
        mut span: Span,
    ) -> Result<Evicted, Rejected> {
        let id = trace_id_of(&span.trace_id).ok_or(Rejected::InvalidTraceId)?;
        let span_id = span_id_of(&span.span_id).ok_or(Rejected::InvalidSpanId)?;
        if let Some(trace) = self.ids.get(&id).and_then(|seq| self.traces.get(seq))
            && trace.span(span_id).is_some()
        {
            return Err(Rejected::Duplicate);
        }
        let mut keys = indexed_tags(&span);
        for link in &span.links {
            if let Some(target) = trace_id_of(&link.trace_id) {
                keys.push(link_hash(&target));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let name = std::mem::take(&mut span.name);
        let service: Arc<str> = match self.services.get_key_value(process.service.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(process.service.as_str()),
        };
        let operation: Arc<str> = self
            .services
            .get(&service)
            .and_then(|e| e.operations.get_key_value(name.as_str()))
            .map_or_else(|| Arc::from(name.as_str()), |(k, _)| k.clone());
        let (_, stored) =
            StoredSpan::new(span, service.clone(), operation.clone(), process.clone()).map_err(
                |bad| match bad {
                    span::BadId::Trace => Rejected::InvalidTraceId,
                    span::BadId::Span => Rejected::InvalidSpanId,
                },
            )?;
        // The worst case: every key new to the index and to the trace, the service and
        // operation postings new, the span-id map built now.
        let mut charge = SPAN_OVERHEAD
            + stored.heap_bytes()
            + keys.len() * (INDEX_KEY + 2 * POSTING)
            + 2 * POSTING
            + (SMALL_TRACE + 1) * ID_SLOT;
        if !self.ids.contains_key(&id) {
            charge += TRACE_OVERHEAD;
        }
        if charge > self.limit {
            return Err(Rejected::TooLarge);
        }
        let mut evicted = Evicted::default();
        while self.used + charge > self.limit {
            // The oldest unpinned trace; when only pinned ones are left, the oldest of those.
            let victim = (self.traces.iter().find(|(_, t)| !t.pinned))
                .or_else(|| self.traces.iter().next())
                .map(|(seq, _)| *seq);
            let Some(oldest) = victim.and_then(|seq| self.traces.remove(&seq)) else {
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

        let mut used = SPAN_OVERHEAD + stored.heap_bytes();
        let seq = match self.ids.get(&id) {
            Some(&seq) => seq,
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.ids.insert(id, seq);
                let reach_us = (self.traces.last_key_value())
                    .map_or(0, |(_, t)| t.reach_us)
                    .max(stored.start_us);
                self.traces.insert(
                    seq,
                    Trace {
                        id,
                        spans: Vec::new(),
                        pinned: false,
                        seq,
                        start_us: u64::MAX,
                        end_us: 0,
                        reach_us,
                        bytes: 0,
                        keys: Vec::new(),
                        by_id: None,
                    },
                );
                used += TRACE_OVERHEAD;
                seq
            }
        };
        let error = stored.error;
        let entry = self.services.entry(service).or_default();
        entry.spans += 1;
        entry.errors += u64::from(error);
        used += index::post(&mut entry.traces, seq) * POSTING;
        let op = entry.operations.entry(operation).or_default();
        op.spans += 1;
        op.errors += u64::from(error);
        used += index::post(&mut op.traces, seq) * POSTING;
        let trace = self
            .traces
            .get_mut(&seq)
            .expect("trace entry was just ensured");
        for hash in keys {
            if let Err(at) = trace.keys.binary_search(&hash) {
                trace.keys.insert(at, hash);
                used += POSTING;
                let postings = self.tags.entry(hash).or_insert_with(|| {
                    used += INDEX_KEY;
                    Postings::new()
                });
                used += index::post(postings, seq) * POSTING;
            }
        }
        used += trace.push(stored);
        trace.bytes += used;
        self.used += used;
        self.spans += 1;
        Ok(evicted)
    }

    /// Removes an evicted trace from every index and the budget.
    fn forget(&mut self, trace: Trace) {
        self.ids.remove(&trace.id);
        self.used -= trace.bytes;
        self.spans -= trace.spans.len() as u64;
        if trace.pinned {
            self.pinned -= 1;
        }
        let mut processes: Vec<Arc<Process>> = Vec::new();
        for span in &trace.spans {
            if !processes.iter().any(|p| Arc::ptr_eq(p, &span.process)) {
                processes.push(span.process.clone());
            }
            if let Some(entry) = self.services.get_mut(&*span.service) {
                entry.spans -= 1;
                entry.errors -= u64::from(span.error);
                index::unpost(&mut entry.traces, trace.seq);
                if let Some(op) = entry.operations.get_mut(&*span.operation) {
                    op.spans -= 1;
                    op.errors -= u64::from(span.error);
                    index::unpost(&mut op.traces, trace.seq);
                    if op.spans == 0 {
                        entry.operations.remove(&*span.operation);
                    }
                }
                if entry.spans == 0 {
                    self.services.remove(&*span.service);
                }
            }
        }
        for hash in &trace.keys {
            if let Some(postings) = self.tags.get_mut(hash) {
                index::unpost(postings, trace.seq);
                if postings.is_empty() {
                    self.tags.remove(hash);
                }
            }
        }
        drop(trace);
        // A resource none of the remaining spans came from is given back.
        for process in processes {
            if Arc::strong_count(&process) == 2 {
                self.processes.retain(|encoded, p| {
                    let last = Arc::ptr_eq(p, &process);
                    if last {
                        self.used = self.used.saturating_sub(process_bytes(encoded, p));
                    }
                    !last
                });
            }
        }
    }

    /// The trace with `id`.
    pub fn trace(&self, id: &TraceId) -> Option<&Trace> {
        self.ids.get(id).and_then(|seq| self.traces.get(seq))
    }

    /// Pins trace `id` so eviction skips it (at most [`MAX_PINNED`] traces, holding at most a
    /// quarter of the budget together). Pinning a pinned trace is not an error.
    pub fn pin(&mut self, id: &TraceId) -> Result<(), PinError> {
        let seq = *self.ids.get(id).ok_or(PinError::NotFound)?;
        let pinned_bytes: usize = self
            .traces
            .values()
            .filter(|t| t.pinned)
            .map(|t| t.bytes)
            .sum();
        let trace = self.traces.get_mut(&seq).ok_or(PinError::NotFound)?;
        if trace.pinned {
            return Ok(());
        }
        if self.pinned >= MAX_PINNED {
            return Err(PinError::TooMany);
        }
        if pinned_bytes + trace.bytes > self.limit / 4 {
            return Err(PinError::TooLarge);
        }
        trace.pinned = true;
        self.pinned += 1;
        Ok(())
    }

    /// Unpins trace `id`; `false` if it is not stored.
    pub fn unpin(&mut self, id: &TraceId) -> bool {
        let Some(trace) = self.ids.get(id).and_then(|seq| self.traces.get_mut(seq)) else {
            return false;
        };
        if trace.pinned {
            trace.pinned = false;
            self.pinned -= 1;
        }
        true
    }

    /// Spans of other traces (and of this one) that link to a span of trace `id`: each with
    /// its trace and the linked span id.
    pub fn linked_from(&self, id: &TraceId) -> Vec<(&Trace, &StoredSpan, u64)> {
        let mut out = Vec::new();
        let Some(postings) = self.tags.get(&link_hash(id)) else {
            return out;
        };
        for trace in postings.iter().filter_map(|seq| self.traces.get(seq)) {
            for span in trace.spans.iter().filter(|s| s.has_links) {
                for link in span.decode(&trace.id).links {
                    if trace_id_of(&link.trace_id) == Some(*id)
                        && let Some(target) = span_id_of(&link.span_id)
                    {
                        out.push((trace, span, target));
                    }
                }
            }
        }
        out
    }
}

/// What an interned resource is charged: its key, its decoded attributes, the map slot.
fn process_bytes(encoded: &[u8], process: &Process) -> usize {
    encoded.len()
        + process.service.len()
        + span::attributes_footprint(&process.attributes)
        + size_of::<Process>()
        + 96
}
