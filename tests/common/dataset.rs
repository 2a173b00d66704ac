//! Generated OTLP data for developer mode, shared by the scale test (`tests/devmode_scale.rs`)
//! and the store benchmark (`benches/devmode.rs`, which includes this file with `#[path]`): a
//! deterministic random source, attribute helpers, and [`Exports`], which groups generated spans
//! by resource into encoded `ExportTraceServiceRequest` bodies. Each user keeps its own trace
//! shapes (the bench's Bookinfo page loads, the test's 15-service dataset); this file holds
//! what they both need, so it uses nothing from the rest of the test harness.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// xorshift64*: deterministic datasets without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An OTLP attribute.
pub fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A string attribute value.
pub fn s(v: impl Into<String>) -> Value {
    Value::StringValue(v.into())
}

/// Lower-case hex of an id, as the developer-mode API and UI show it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Spans waiting to be encoded, grouped by resource (one `ResourceSpans` per key, in key
/// order); a request is closed once it holds `per_request` spans, or on [`Exports::flush`].
pub struct Exports<K> {
    by_resource: BTreeMap<K, Vec<Span>>,
    resource: fn(&K) -> Resource,
    per_request: usize,
    pending: usize,
    /// The encoded requests closed so far.
    pub requests: Vec<Vec<u8>>,
    /// Every span added.
    pub spans: usize,
}

impl<K: Ord> Exports<K> {
    /// Requests of up to `per_request` spans, each key's resource made by `resource`.
    pub fn new(per_request: usize, resource: fn(&K) -> Resource) -> Self {
        Exports {
            by_resource: BTreeMap::new(),
            resource,
            per_request,
            pending: 0,
            requests: Vec::new(),
            spans: 0,
        }
    }

    /// Adds `span` under the resource `key`.
    pub fn add(&mut self, key: K, span: Span) {
        self.by_resource.entry(key).or_default().push(span);
        self.pending += 1;
        self.spans += 1;
        if self.pending >= self.per_request {
            self.flush();
        }
    }

    /// Closes the current request, if it holds any span.
    pub fn flush(&mut self) {
        if self.pending == 0 {
            return;
        }
        let export = ExportTraceServiceRequest {
            resource_spans: std::mem::take(&mut self.by_resource)
                .into_iter()
                .map(|(key, spans)| ResourceSpans {
                    resource: Some((self.resource)(&key)),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        self.requests.push(export.encode_to_vec());
        self.pending = 0;
    }
}
