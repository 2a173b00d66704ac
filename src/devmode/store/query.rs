//! Queries over the store: span predicates, trace search, latency distribution, service and
//! operation summaries, service dependencies.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::Span;
use serde::Serialize;

use super::index::{Postings, tag_hash};
use super::span::{is_error, times};
use super::{MAX_INDEXED_VALUE, Store, StoredSpan, Trace, hex, kind_name, trace_id_of};

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
            && self
                .tags
                .iter()
                .all(|(key, want)| span.has_attribute(key, want))
    }

    /// Whether a trace spanning `start..=end` can hold a span that passes the time window.
    pub(crate) fn window_overlaps(&self, trace: &Trace) -> bool {
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
    /// Whether the trace is pinned (eviction skips it).
    pub pinned: bool,
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

/// How histogram buckets divide the range of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Equal widths.
    Linear,
    /// Widths growing geometrically: latencies span orders of magnitude.
    Log,
}

/// The latency distribution of the spans matching a query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// Matching spans.
    pub spans: u64,
    /// How the buckets divide the range.
    pub scale: Scale,
    /// Contiguous buckets from the smallest to the largest duration.
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

impl Store {
    /// Traces that may hold spans matching `query`, newest arrival first (which
    /// [`Store::traces`] relies on): the postings of the most selective indexed filter, or
    /// every trace.
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
    ///
    /// Candidates come newest arrival first and the newest `limit` matches are kept; the search
    /// stops at the first trace whose reach (the latest start of it and every older trace) is
    /// not newer than the oldest kept, and skips the spans of a trace that would not be kept.
    /// A query that many recent traces satisfy looks inside few of them.
    pub fn traces(&self, query: &SpanQuery, limit: usize) -> Vec<TraceSummary> {
        // The newest matches so far as (start, seq, matched), the oldest on top. (start, seq)
        // is unique (seq is), so the order is total.
        let mut top: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
        for trace in self.candidates(query) {
            if limit == 0 {
                break;
            }
            if top.len() == limit
                && let Some(&Reverse((start, seq, _))) = top.peek()
            {
                if trace.reach_us <= start {
                    // This trace and every older one (they come later) start no later.
                    break;
                }
                if (trace.start_us, trace.seq) < (start, seq) {
                    continue;
                }
            }
            let matched = trace.spans.iter().filter(|s| query.matches(s)).count();
            if matched > 0 {
                top.push(Reverse((trace.start_us, trace.seq, matched)));
                if top.len() > limit {
                    top.pop();
                }
            }
        }
        let mut hits = top.into_vec();
        hits.sort_unstable();
        hits.into_iter()
            .filter_map(|Reverse((_, seq, matched))| {
                self.traces.get(&seq).map(|t| t.summary(matched))
            })
            .collect()
    }

    /// The latency distribution of the spans matching `query`, in at most `buckets` buckets
    /// divided on `scale`.
    pub fn latency(&self, query: &SpanQuery, buckets: usize, scale: Scale) -> Latency {
        let mut durations: Vec<u64> = self
            .matching_spans(query)
            .map(|(_, span)| span.duration_us)
            .collect();
        let (Some(&lo), Some(&hi)) = (durations.iter().min(), durations.iter().max()) else {
            return Latency {
                spans: 0,
                scale,
                buckets: Vec::new(),
                p50_us: None,
                p95_us: None,
                p99_us: None,
            };
        };
        let n = buckets.max(1) as u64;
        // The first duration of each bucket, strictly increasing.
        let mut starts = vec![lo];
        match scale {
            Scale::Linear => {
                let width = (hi - lo + 1).div_ceil(n).max(1);
                starts.extend((1..n).map(|i| lo + i * width).take_while(|&s| s <= hi));
            }
            Scale::Log => {
                let (a, b) = (lo.max(1) as f64, (hi + 1) as f64);
                for i in 1..n {
                    let edge = (a * (b / a).powf(i as f64 / n as f64)).round() as u64;
                    if edge > *starts.last().unwrap_or(&lo) && edge <= hi {
                        starts.push(edge);
                    }
                }
            }
        }
        // Each duration counted in its bucket (no sort); percentiles by selection.
        let mut counts = vec![0u64; starts.len()];
        for &d in &durations {
            // `starts[0]` is the smallest duration, so at least one start is <= d.
            counts[starts.partition_point(|&s| s <= d).saturating_sub(1)] += 1;
        }
        let out: Vec<Bucket> = (starts.iter().zip(counts).enumerate())
            .map(|(i, (&lo_us, count))| Bucket {
                lo_us,
                hi_us: starts.get(i + 1).map_or(hi, |next| next - 1),
                count,
            })
            .collect();
        let [p50_us, p95_us, p99_us] = percentiles(&mut durations);
        Latency {
            spans: durations.len() as u64,
            scale,
            buckets: out,
            p50_us,
            p95_us,
            p99_us,
        }
    }

    /// Every service, sorted by name, with counts and latency percentiles.
    pub fn services(&self) -> Vec<ServiceSummary> {
        // One column of durations per service, sized from its count. Services are interned,
        // so the pointer identifies one; the spans of a trace come in runs of one service.
        let (mut columns, column) = columns(self.services.iter().map(|(n, e)| (n, e.spans)));
        let mut last: (*const u8, usize) = (std::ptr::null(), 0);
        for trace in self.traces.values() {
            for span in &trace.spans {
                let service: *const u8 = Arc::as_ptr(&span.service).cast();
                if service != last.0 {
                    let Some(&i) = column.get(&service) else {
                        continue;
                    };
                    last = (service, i);
                }
                columns[last.1].push(span.duration_us);
            }
        }
        (self.services.iter().zip(columns))
            .map(|((name, entry), mut d)| {
                let [p50_us, p95_us, p99_us] = percentiles(&mut d);
                ServiceSummary {
                    name: name.to_string(),
                    spans: entry.spans,
                    errors: entry.errors,
                    error_rate: if entry.spans == 0 {
                        0.0
                    } else {
                        entry.errors as f64 / entry.spans as f64
                    },
                    p50_us,
                    p95_us,
                    p99_us,
                    operations: entry.operations.len(),
                }
            })
            .collect()
    }

    /// The operations of `service`, sorted by name; `None` if the service is unknown.
    pub fn operations(&self, service: &str) -> Option<Vec<OperationSummary>> {
        let (service, entry) = self.services.get_key_value(service)?;
        let (mut columns, column) = columns(entry.operations.iter().map(|(n, o)| (n, o.spans)));
        for trace in entry.traces.iter().filter_map(|seq| self.traces.get(seq)) {
            for span in trace
                .spans
                .iter()
                .filter(|s| Arc::ptr_eq(&s.service, service))
            {
                if let Some(&i) = column.get(&Arc::as_ptr(&span.operation).cast()) {
                    columns[i].push(span.duration_us);
                }
            }
        }
        Some(
            (entry.operations.iter().zip(columns))
                .map(|((name, op), mut d)| {
                    let [p50_us, p95_us, p99_us] = percentiles(&mut d);
                    OperationSummary {
                        name: name.to_string(),
                        spans: op.spans,
                        errors: op.errors,
                        p50_us,
                        p95_us,
                        p99_us,
                    }
                })
                .collect(),
        )
    }

    /// Calls between services, from parent/child spans of different services, sorted.
    pub fn dependencies(&self) -> Vec<Edge> {
        // Services are interned, so the pointer identifies one.
        let mut edges: HashMap<(*const u8, *const u8), (&str, &str, u64)> = HashMap::new();
        for trace in self.traces.values() {
            for span in &trace.spans {
                if span.parent_span_id == 0 {
                    continue;
                }
                if let Some(parent) = trace.span(span.parent_span_id).map(|p| &p.service)
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

/// Empty duration columns for interned names with their span counts, and the column of each
/// name by its pointer.
fn columns<'a>(
    names: impl Iterator<Item = (&'a Arc<str>, u64)>,
) -> (Vec<Vec<u64>>, HashMap<*const u8, usize>) {
    let mut columns = Vec::new();
    let mut by_name = HashMap::new();
    for (i, (name, spans)) in names.enumerate() {
        columns.push(Vec::with_capacity(spans as usize));
        by_name.insert(Arc::as_ptr(name).cast(), i);
    }
    (columns, by_name)
}

/// Nearest-rank p50, p95 and p99 of `values` (reordered), by selection rather than a sort.
pub(crate) fn percentiles(values: &mut [u64]) -> [Option<u64>; 3] {
    let n = values.len() as u64;
    if n == 0 {
        return [None; 3];
    }
    let rank = |p: u64| ((n * p).div_ceil(100).max(1) - 1) as usize;
    let mut out = [None; 3];
    // From the highest rank down: each selection leaves the smaller values before it.
    let mut upto = values.len();
    for (slot, p) in [(2, 99), (1, 95), (0, 50)] {
        let r = rank(p);
        let (_, v, _) = values[..upto].select_nth_unstable(r);
        out[slot] = Some(*v);
        upto = r + 1;
    }
    out
}
