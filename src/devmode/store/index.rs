//! The store's indexes: posting lists of trace sequence numbers and attribute hashes.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::MAX_INDEXED_VALUE;

/// Sequence numbers of traces, ascending. New traces come last and eviction always takes the
/// oldest trace, which is then the front of every list holding it: both ends are O(1).
pub(crate) type Postings = VecDeque<u64>;

/// Adds `seq` to `list` unless it is there; returns how many entries were added (0 or 1).
pub(crate) fn post(list: &mut Postings, seq: u64) -> usize {
    match list.back() {
        Some(&last) if last == seq => 0,
        Some(&last) if last > seq => match list.binary_search(&seq) {
            Ok(_) => 0,
            Err(at) => {
                list.insert(at, seq);
                1
            }
        },
        _ => {
            list.push_back(seq);
            1
        }
    }
}

/// Removes `seq` from `list`.
pub(crate) fn unpost(list: &mut Postings, seq: u64) {
    if list.front() == Some(&seq) {
        list.pop_front();
    } else if let Ok(at) = list.binary_search(&seq) {
        list.remove(at);
    }
}

/// The tag index is keyed by hashes already: do not hash them again.
#[derive(Debug, Default)]
pub(crate) struct Prehashed(u64);

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
pub(crate) struct OperationEntry {
    pub(crate) spans: u64,
    pub(crate) errors: u64,
    pub(crate) traces: Postings,
}

#[derive(Debug, Default)]
pub(crate) struct ServiceEntry {
    pub(crate) spans: u64,
    pub(crate) errors: u64,
    pub(crate) traces: Postings,
    pub(crate) operations: BTreeMap<Arc<str>, OperationEntry>,
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
pub(crate) fn tag_hash(key: &str, value: &str) -> u64 {
    let mut h = tag_hasher(key);
    h.write(value.as_bytes());
    h.write_u8(0xff);
    h.finish()
}

pub(crate) fn tag_hasher(key: &str) -> DefaultHasher {
    let mut h = DefaultHasher::new();
    h.write(key.as_bytes());
    h.write_u8(0xff);
    h
}

/// [`tag_hash`] of an attribute, computed without allocating; `None` for values that are not
/// indexed (arrays, maps, bytes, text longer than [`MAX_INDEXED_VALUE`]).
pub(crate) fn attribute_hash(kv: &KeyValue) -> Option<u64> {
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

/// The index key of the spans that link to a span of trace `target`.
pub(crate) fn link_hash(target: &[u8; 16]) -> u64 {
    let mut h = tag_hasher("\u{0}link");
    h.write(target);
    h.write_u8(0xff);
    h.finish()
}

/// Index keys of `span`'s attributes: scalar values no longer than [`MAX_INDEXED_VALUE`].
pub(crate) fn indexed_tags(span: &Span) -> Vec<u64> {
    let mut out: Vec<u64> = span.attributes.iter().filter_map(attribute_hash).collect();
    out.sort_unstable();
    out.dedup();
    out
}
