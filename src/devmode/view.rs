//! One trace as the trace view shows it (`/api/traces/{id}`): every span decoded again, in
//! start order, with its resource (process), its links in both directions, and the clock-skew
//! adjustment the waterfall draws it with. Or only its timeline (`?fields=timeline`): what the
//! waterfall draws, read from the stored fields without decoding any span and serialised
//! without building a JSON tree, so a 20,000-span trace is drawn at once and its tags, logs
//! and links follow.
//!
//! Clock skew: a span sent by another service than its parent's was timed by another clock.
//! When it does not fit inside its parent, it is shifted (with its subtree) to fit, the way
//! Jaeger's adjuster does: centred in the parent when it is shorter, else moved to the parent's
//! start. The raw times are kept; the shift is reported per span as `skew_us`, and nothing is
//! hidden. Spans of the same service as their parent share its clock and are never moved.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::store::{
    Store, StoredSpan, Trace, attributes_json, hex, kind_name, span_id_of, trace_id_of,
};

/// The shift, in µs, of each span of `spans` (indexes as given) that clock-skew adjustment
/// moves; spans not moved are absent.
pub fn skew(spans: &[&StoredSpan]) -> HashMap<usize, i64> {
    let at: HashMap<u64, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match at.get(&s.parent_span_id) {
            Some(&p) if s.parent_span_id != 0 && p != i => children.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    let mut shifts: HashMap<usize, i64> = HashMap::new();
    let mut seen = vec![false; spans.len()];
    // (span, shift inherited from its ancestors)
    let mut stack: Vec<(usize, i64)> = roots.into_iter().map(|r| (r, 0)).collect();
    while let Some((i, inherited)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let parent_start = spans[i].start_us as i64 + inherited;
        let parent_end = parent_start + spans[i].duration_us as i64;
        for &c in children.get(&i).map(Vec::as_slice).unwrap_or_default() {
            let child = spans[c];
            let start = child.start_us as i64 + inherited;
            let end = start + child.duration_us as i64;
            let mut own = 0;
            if !std::sync::Arc::ptr_eq(&child.service, &spans[i].service)
                && (start < parent_start || end > parent_end)
            {
                let room = spans[i].duration_us as i64 - child.duration_us as i64;
                own = if room >= 0 {
                    parent_start + room / 2 - start
                } else {
                    parent_start - start
                };
            }
            let total = inherited + own;
            if total != 0 {
                shifts.insert(c, total);
            }
            stack.push((c, total));
        }
    }
    shifts
}

/// The number n of `span`'s process (`p<n>`, from 1, in order of first appearance), adding the
/// process to `processes` on first sight.
fn process_number(
    span: &StoredSpan,
    seen: &mut Vec<*const super::store::Process>,
    processes: &mut Map<String, Value>,
) -> usize {
    let ptr = std::sync::Arc::as_ptr(&span.process);
    if let Some(n) = seen.iter().position(|p| *p == ptr) {
        return n + 1;
    }
    seen.push(ptr);
    processes.insert(
        format!("p{}", seen.len()),
        json!({
            "service": span.process.service,
            "attributes": attributes_json(&span.process.attributes),
        }),
    );
    seen.len()
}

/// The JSON of trace `trace` as `/api/traces/{id}` answers it.
pub fn trace_json(store: &Store, trace: &Trace) -> Value {
    let mut spans: Vec<&StoredSpan> = trace.spans.iter().collect();
    spans.sort_by_key(|s| (s.start_us, std::cmp::Reverse(s.duration_us)));
    let shifts = skew(&spans);
    // Processes, numbered in order of first appearance.
    let mut process_ids: Vec<*const super::store::Process> = Vec::new();
    let mut processes = Map::new();
    let mut linked_from: HashMap<u64, Vec<Value>> = HashMap::new();
    for (from, span, target) in store.linked_from(&trace.id) {
        linked_from.entry(target).or_default().push(json!({
            "trace_id": from.id_hex(),
            "span_id": span.span_id_hex(),
            "service": &*span.service,
            "operation": &*span.operation,
        }));
    }
    let mut out = Vec::with_capacity(spans.len());
    for (i, span) in spans.iter().enumerate() {
        let pid = process_number(span, &mut process_ids, &mut processes) - 1;
        let mut value = span_json(span, trace, store);
        if let Value::Object(fields) = &mut value {
            fields.insert("process_id".into(), Value::from(format!("p{}", pid + 1)));
            if let Some(shift) = shifts.get(&i) {
                fields.insert("skew_us".into(), Value::from(*shift));
            }
            if let Some(from) = linked_from.remove(&span.span_id) {
                fields.insert("linked_from".into(), Value::Array(from));
            }
        }
        out.push(value);
    }
    // Links to spans of this trace that are not stored: shown on the trace, not lost.
    let orphans: Vec<Value> = linked_from.into_values().flatten().collect();
    json!({
        "trace_id": trace.id_hex(),
        "pinned": trace.pinned,
        "skewed_spans": shifts.len(),
        "processes": processes,
        "spans": out,
        "linked_from_elsewhere": orphans,
    })
}

/// A trace's timeline, column by column (one array per field, names as indexes into
/// `strings`): about 80 bytes a span, quick to write and to read. See the module documentation.
#[derive(Debug, Serialize)]
pub struct Timeline<'a> {
    /// 32 hex digits.
    trace_id: String,
    /// Whether eviction skips it.
    pinned: bool,
    /// Spans shifted for clock skew.
    skewed_spans: usize,
    /// Processes by id (`p1`, `p2`...).
    processes: Map<String, Value>,
    /// Service and operation names, each once.
    strings: Vec<&'a str>,
    /// The spans, in start order.
    columns: Columns,
}

/// The spans of a [`Timeline`], one array per field.
#[derive(Debug, Default, Serialize)]
struct Columns {
    span_id: Vec<String>,
    /// `""` for a root.
    parent_span_id: Vec<String>,
    /// Index into `strings`.
    service: Vec<u32>,
    /// Index into `strings`.
    operation: Vec<u32>,
    start_us: Vec<u64>,
    duration_us: Vec<u64>,
    /// The OTLP span kind number.
    kind: Vec<i32>,
    /// 1 for an error span.
    error: Vec<u8>,
    /// `p<n>` is the process.
    process: Vec<u32>,
    /// The clock-skew shift, 0 when none.
    skew_us: Vec<i64>,
}

/// The index of interned name `s` in `strings`, added on first sight.
fn intern<'a>(
    s: &'a std::sync::Arc<str>,
    strings: &mut Vec<&'a str>,
    index: &mut HashMap<*const u8, u32>,
) -> u32 {
    *index
        .entry(std::sync::Arc::as_ptr(s).cast())
        .or_insert_with(|| {
            strings.push(s);
            strings.len() as u32 - 1
        })
}

/// The timeline of `trace` (`/api/traces/{id}?fields=timeline`).
pub fn timeline(trace: &Trace) -> Timeline<'_> {
    let mut spans: Vec<&StoredSpan> = trace.spans.iter().collect();
    spans.sort_by_key(|s| (s.start_us, std::cmp::Reverse(s.duration_us)));
    let shifts = skew(&spans);
    let mut process_ids: Vec<*const super::store::Process> = Vec::new();
    let mut processes = Map::new();
    let mut strings: Vec<&str> = Vec::new();
    let mut index: HashMap<*const u8, u32> = HashMap::new();
    let mut c = Columns::default();
    for (i, span) in spans.iter().enumerate() {
        let pid = process_number(span, &mut process_ids, &mut processes);
        c.span_id.push(span.span_id_hex());
        c.parent_span_id.push(span.parent_hex().unwrap_or_default());
        c.service
            .push(intern(&span.service, &mut strings, &mut index));
        c.operation
            .push(intern(&span.operation, &mut strings, &mut index));
        c.start_us.push(span.start_us);
        c.duration_us.push(span.duration_us);
        c.kind.push(span.kind);
        c.error.push(u8::from(span.error));
        c.process.push(pid as u32);
        c.skew_us.push(shifts.get(&i).copied().unwrap_or(0));
    }
    Timeline {
        trace_id: trace.id_hex(),
        pinned: trace.pinned,
        skewed_spans: shifts.len(),
        processes,
        strings,
        columns: c,
    }
}

/// One span: its ids, names, times, tags, logs and links.
fn span_json(span: &StoredSpan, trace: &Trace, store: &Store) -> Value {
    let decoded = span.decode(&trace.id);
    let logs: Vec<Value> = decoded
        .events
        .iter()
        .map(|event| {
            let mut fields = Map::new();
            fields.insert("event".to_owned(), Value::from(event.name.as_str()));
            fields.extend(attributes_json(&event.attributes));
            json!({ "time_us": event.time_unix_nano / 1000, "fields": fields })
        })
        .collect();
    let links: Vec<Value> = decoded
        .links
        .iter()
        .map(|link| {
            let target = trace_id_of(&link.trace_id);
            let stored = target
                .and_then(|id| store.trace(&id))
                .zip(span_id_of(&link.span_id))
                .is_some_and(|(t, sid)| t.span(sid).is_some());
            json!({
                "trace_id": target.map_or_else(|| hex(&link.trace_id), |id| hex(&id)),
                "span_id": hex(&link.span_id),
                "attributes": attributes_json(&link.attributes),
                "stored": stored,
            })
        })
        .collect();
    json!({
        "span_id": span.span_id_hex(),
        "parent_span_id": span.parent_hex(),
        "service": &*span.service,
        "operation": &*span.operation,
        "start_us": span.start_us,
        "duration_us": span.duration_us,
        "kind": kind_name(span.kind),
        "error": span.error,
        "status_message": decoded.status.as_ref().map_or("", |s| s.message.as_str()),
        "tags": attributes_json(&decoded.attributes),
        "logs": logs,
        "links": links,
    })
}

#[cfg(test)]
mod tests;
