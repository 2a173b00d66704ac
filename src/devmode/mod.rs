//! Developer mode: every span that arrives, kept in memory and shown in a local web UI.
//!
//! The [`Tee`] sits after the intake: once a request is accepted into the pipeline, its bytes
//! (already `Bytes`, so no copy) are offered to a bounded queue; when the queue is full the
//! store loses them, counted, and the client and the forwarding path never notice. A store
//! thread decodes them with prost — off the hot path — into the translation layer's model
//! (OTLP spans plus their resource's `service.name`) and inserts them into the [`Store`],
//! which evicts whole oldest traces to stay within `--store-bytes`. The JSON API ([`api`]) and
//! the web UI ([`ui`]) are served on the admin listener.
//!
//! This module never decides what is forwarded: with `--upstream`, the pipeline forwards as in
//! `serve` mode and the store gets a copy.

pub mod api;
pub mod store;
pub mod ui;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use metrics::Counter;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::sync::{broadcast, mpsc};

pub use store::{SpanSummary, Store};

use crate::telemetry;
use crate::translate;
use crate::wire::report::assemble_report;

/// Requests the store queue holds at most.
const QUEUE_REQUESTS: usize = 1024;
/// Bytes of requests the store queue holds at most (besides [`QUEUE_REQUESTS`]).
const QUEUE_BYTES: usize = 64 << 20;
/// New-span summaries kept for slow live-tail readers before they skip ahead.
const LIVE_BACKLOG: usize = 4096;
/// The service of spans whose resource has no `service.name`, as the OTel SDKs name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// An accepted request on its way to the store.
#[derive(Debug)]
enum Teed {
    /// An encoded `ExportTraceServiceRequest`.
    Otlp(Bytes),
    /// The parts of a Lightstep `ReportRequest` (a streamed upload arrives in pieces).
    Lightstep {
        reporter: Bytes,
        timestamp_offset_micros: i64,
        runs: Vec<Bytes>,
        spans: u32,
    },
}

/// Why the store lost spans before storing them: the `reason` label of
/// [`telemetry::STORE_SPANS_DROPPED`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDropReason {
    /// The queue to the store thread was full.
    QueueFull,
    /// The request did not decode (e.g. a Lightstep string field that is not UTF-8).
    Undecodable,
    /// The span has no usable trace id.
    InvalidTraceId,
    /// One span larger than the whole store.
    TooLarge,
}

impl StoreDropReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreDropReason::QueueFull => "queue_full",
            StoreDropReason::Undecodable => "undecodable",
            StoreDropReason::InvalidTraceId => "invalid_trace_id",
            StoreDropReason::TooLarge => "too_large",
        }
    }
}

/// The shared developer-mode state: the store, the live feed, and what the store was offered.
#[derive(Debug)]
pub struct DevMode {
    /// The trace store. Written by the store thread only; the API reads.
    pub store: RwLock<Store>,
    /// New spans, for the live tail.
    pub live: broadcast::Sender<Arc<SpanSummary>>,
    received: AtomicU64,
    dropped: AtomicU64,
}

impl DevMode {
    /// Spans offered to the store (accepted by the intake) since start.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Spans the store lost before storing them since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn drop_spans(&self, reason: StoreDropReason, spans: u64) {
        if spans > 0 {
            self.dropped.fetch_add(spans, Ordering::Relaxed);
            metrics::counter!(telemetry::STORE_SPANS_DROPPED, "reason" => reason.as_str())
                .increment(spans);
        }
    }

    /// A store of `store_bytes`, its tee, and the thread that fills it from the tee. The
    /// thread ends when every clone of the tee is dropped.
    pub fn start(store_bytes: usize) -> std::io::Result<(Tee, Arc<DevMode>)> {
        let dev = Arc::new(DevMode {
            store: RwLock::new(Store::new(store_bytes)),
            live: broadcast::channel(LIVE_BACKLOG).0,
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        metrics::gauge!(telemetry::STORE_CAPACITY_BYTES).set(store_bytes as f64);
        let (tx, rx) = mpsc::channel(QUEUE_REQUESTS);
        let queued = Arc::new(AtomicUsize::new(0));
        let tee = Tee {
            tx,
            queued: queued.clone(),
            dev: dev.clone(),
        };
        let worker = StoreWorker {
            dev: dev.clone(),
            queued,
            stored: metrics::counter!(telemetry::STORE_SPANS_STORED),
            evicted_spans: metrics::counter!(telemetry::STORE_EVICTED_SPANS),
            evicted_traces: metrics::counter!(telemetry::STORE_EVICTED_TRACES),
        };
        std::thread::Builder::new()
            .name("cubesat-store".into())
            .spawn(move || worker.run(rx))?;
        Ok((tee, dev))
    }
}

/// The intake's handle on the store queue. Never blocks, never fails the request.
#[derive(Debug, Clone)]
pub struct Tee {
    tx: mpsc::Sender<Teed>,
    queued: Arc<AtomicUsize>,
    dev: Arc<DevMode>,
}

impl crate::ingest::Tee for Tee {
    fn otlp(&self, body: Bytes, spans: u32) {
        let bytes = body.len();
        self.offer(Teed::Otlp(body), bytes, spans);
    }

    fn lightstep(
        &self,
        reporter: Bytes,
        timestamp_offset_micros: i64,
        runs: Vec<Bytes>,
        spans: u32,
    ) {
        let bytes = reporter.len() + runs.iter().map(Bytes::len).sum::<usize>();
        self.offer(
            Teed::Lightstep {
                reporter,
                timestamp_offset_micros,
                runs,
                spans,
            },
            bytes,
            spans,
        );
    }
}

impl Tee {
    fn offer(&self, item: Teed, bytes: usize, spans: u32) {
        let spans = u64::from(spans);
        self.dev.received.fetch_add(spans, Ordering::Relaxed);
        if self.queued.fetch_add(bytes, Ordering::AcqRel) + bytes > QUEUE_BYTES {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.dev.drop_spans(StoreDropReason::QueueFull, spans);
            return;
        }
        if self.tx.try_send(item).is_err() {
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
            self.dev.drop_spans(StoreDropReason::QueueFull, spans);
        }
    }
}

struct StoreWorker {
    dev: Arc<DevMode>,
    queued: Arc<AtomicUsize>,
    stored: Counter,
    evicted_spans: Counter,
    evicted_traces: Counter,
}

impl StoreWorker {
    fn run(self, mut rx: mpsc::Receiver<Teed>) {
        while let Some(item) = rx.blocking_recv() {
            let bytes = match &item {
                Teed::Otlp(body) => body.len(),
                Teed::Lightstep { reporter, runs, .. } => {
                    reporter.len() + runs.iter().map(Bytes::len).sum::<usize>()
                }
            };
            self.take(item);
            self.queued.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    fn take(&self, item: Teed) {
        let export = match decode(item) {
            Ok(export) => export,
            Err(spans) => {
                self.dev.drop_spans(StoreDropReason::Undecodable, spans);
                return;
            }
        };
        let spans: Vec<(String, Span)> = export
            .resource_spans
            .into_iter()
            .flat_map(|rs| {
                let service = service_name(rs.resource.as_ref());
                rs.scope_spans
                    .into_iter()
                    .flat_map(|ss| ss.spans)
                    .map(move |span| (service.clone(), span))
            })
            .collect();
        let live = self.dev.live.receiver_count() > 0;
        let mut summaries = Vec::new();
        let (mut invalid, mut too_large, mut stored) = (0, 0, 0);
        {
            let mut store = match self.dev.store.write() {
                Ok(store) => store,
                Err(poisoned) => poisoned.into_inner(),
            };
            for (service, span) in spans {
                let summary = live.then(|| SpanSummary::of(&service, &span));
                match store.insert(&service, span) {
                    Ok(evicted) => {
                        stored += 1;
                        self.evicted_spans.increment(evicted.spans);
                        self.evicted_traces.increment(evicted.traces);
                        summaries.extend(summary);
                    }
                    Err(store::Rejected::InvalidTraceId) => invalid += 1,
                    Err(store::Rejected::TooLarge) => too_large += 1,
                }
            }
            metrics::gauge!(telemetry::STORE_BYTES).set(store.stats().used_bytes as f64);
        }
        self.stored.increment(stored);
        self.dev
            .drop_spans(StoreDropReason::InvalidTraceId, invalid);
        self.dev.drop_spans(StoreDropReason::TooLarge, too_large);
        for summary in summaries {
            let _ = self.dev.live.send(Arc::new(summary));
        }
    }
}

/// Decodes a teed request into the OTLP model; on failure, the number of spans lost.
fn decode(item: Teed) -> Result<ExportTraceServiceRequest, u64> {
    match item {
        Teed::Otlp(body) => ExportTraceServiceRequest::decode(body.clone()).map_err(|_| {
            // How many spans were lost: the scan the intake passed counts them without decoding.
            crate::wire::otlp::scan_export(&body, usize::MAX).map_or(0, |s| u64::from(s.count))
        }),
        Teed::Lightstep {
            reporter,
            timestamp_offset_micros,
            runs,
            spans,
        } => {
            // The spans may come from a streamed upload: rebuild the report from its parts,
            // then translate it with the lenient decoder (non-UTF-8 strings are repaired).
            let report = assemble_report(&reporter, &[], timestamp_offset_micros, &runs);
            let report = translate::decode_report(&report).map_err(|_| u64::from(spans))?;
            Ok(translate::report_to_export(&report))
        }
    }
}

fn service_name(resource: Option<&Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .map(|v| store::text(v).into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| UNKNOWN_SERVICE.to_owned())
}

/// The developer-mode routes for the admin listener: the JSON API and the web UI.
pub fn router(state: api::ApiState) -> axum::Router {
    api::router(state).merge(ui::router())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Tee as _;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    #[test]
    fn the_tee_stores_accepted_requests_and_counts_undecodable_ones() {
        let (tee, dev) = DevMode::start(1 << 20).unwrap();
        let export = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: None,
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "op".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        tee.otlp(Bytes::from(export.encode_to_vec()), 1);
        // Garbage that the intake would never pass is counted as undecodable, not stored.
        tee.lightstep(
            Bytes::from_static(b"\xff"),
            0,
            vec![Bytes::from_static(b"\x1a\x01")],
            1,
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while dev.store.read().unwrap().stats().spans < 1 || dev.dropped() < 1 {
            assert!(std::time::Instant::now() < deadline, "store never filled");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(dev.received(), 2);
        assert_eq!(
            dev.store.read().unwrap().services()[0].name,
            UNKNOWN_SERVICE
        );
    }

    #[test]
    fn a_full_queue_drops_for_the_store_only_and_counts() {
        let (tee, dev) = DevMode::start(1 << 20).unwrap();
        let export = |n: u8| {
            ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![n.max(1); 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec()
        };
        let offered = QUEUE_REQUESTS as u64 + 100;
        {
            // A reader holding the store stalls the store thread: the queue fills up.
            let _reader = dev.store.read().unwrap();
            for n in 0..offered {
                tee.otlp(Bytes::from(export(n as u8)), 1);
            }
            assert!(dev.dropped() >= 99, "dropped {}", dev.dropped());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stored = dev.store.read().unwrap().stats();
            let seen = stored.spans + stored.evicted_spans + dev.dropped();
            if seen == offered {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{seen} of {offered} accounted for"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(dev.received(), offered);
    }
}
