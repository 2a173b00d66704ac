//! Batchers: each owns one shard of the ring and keeps one open batch per [`BatchKey`]
//! (token, reporter, clock offset, protocol), so batches never mix tokens or reporters.
//!
//! A batch is flushed to the [`BatchSink`] when it reaches `max_spans` or `max_bytes`, or when
//! it has been open for `max_age`, or at once (oldest first) while the buffer budget is above
//! its flush mark: with many reporters, each open batch would otherwise hold its bytes for the
//! whole timeout and fill the budget while the upstream has headroom. Under pressure the
//! batcher first takes every report already queued on its shard, so what waited for an
//! upstream slot still leaves in few, full requests. Flushing writes the header once and hands the span runs on
//! untouched: no decode, no re-encode, no copy of a span.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Batch, BatchKey, Budget, Charge, Part, Report, Spooled};

/// When a batch is full enough, or old enough, to send.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Flush at this many spans.
    pub max_spans: u32,
    /// Flush before the encoded request would pass this many bytes.
    pub max_bytes: usize,
    /// Flush a batch this long after its first span arrived.
    pub max_age: Duration,
}

/// Where full batches go: the upstream exporter, or a test double.
pub trait BatchSink: Send + Sync + 'static {
    /// Takes a batch. May wait (for a free upstream slot): that wait is the backpressure.
    fn submit(&self, batch: Batch) -> impl Future<Output = ()> + Send;
}

struct OpenBatch {
    runs: Vec<Bytes>,
    spans: u32,
    bytes: usize,
    opened: Instant,
    charge: Charge,
    spooled: Spooled,
}

/// One batcher task's state: the open batches of one ring shard.
pub struct Batcher<S> {
    limits: BatchLimits,
    open: HashMap<BatchKey, OpenBatch>,
    sink: S,
    flush_now: CancellationToken,
    budget: Option<Budget>,
    pressure_flushes: metrics::Counter,
}

/// Reports taken from the shard at most per pressure flush, so one flush stays short.
const PRESSURE_DRAIN: usize = 4096;

impl<S: BatchSink> Batcher<S> {
    /// A batcher with no open batches.
    pub fn new(limits: BatchLimits, sink: S) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            sink,
            flush_now: CancellationToken::new(),
            budget: None,
            pressure_flushes: metrics::counter!(crate::telemetry::BATCHES_PRESSURE_FLUSHED),
        }
    }

    /// Once `token` is cancelled (shutdown has begun), every open batch is flushed at once and
    /// every report after it is sent as soon as it arrives, whatever `max_age` says.
    pub fn flush_at_once_on(mut self, token: CancellationToken) -> Self {
        self.flush_now = token;
        self
    }

    /// Watches `budget`: above its flush mark, open batches leave at once instead of at their
    /// timeout.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Reads `rx` until `drain` is cancelled and the shard is empty, then flushes everything.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Report>, drain: CancellationToken) {
        let tick = (self.limits.max_age / 4).max(Duration::from_millis(5));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut draining = false;
        let mut at_once = false;
        let flush_now = self.flush_now.clone();
        let budget = self.budget.clone();
        let pressure_rises = || async {
            match &budget {
                Some(budget) => budget.pressure_rises().await,
                None => std::future::pending().await,
            }
        };
        loop {
            // Biased, so a steady stream of reports cannot starve the age-based flush.
            tokio::select! {
                biased;
                _ = drain.cancelled(), if !draining => {
                    // Refuse new reports; the ones already queued are still taken below.
                    draining = true;
                    rx.close();
                }
                _ = flush_now.cancelled(), if !at_once => {
                    at_once = true;
                    self.flush_older_than(Duration::ZERO).await;
                }
                _ = pressure_rises() => self.relieve(&mut rx).await,
                _ = ticker.tick() => {
                    if self.under_pressure() {
                        self.relieve(&mut rx).await;
                    } else {
                        self.flush_older_than(self.limits.max_age).await;
                    }
                }
                report = rx.recv() => match report {
                    Some(report) => {
                        self.add(report).await;
                        if at_once {
                            self.flush_older_than(Duration::ZERO).await;
                        } else if self.under_pressure() {
                            self.relieve(&mut rx).await;
                        }
                    }
                    None => break,
                },
            }
        }
        self.flush_older_than(Duration::ZERO).await;
    }

    fn under_pressure(&self) -> bool {
        self.budget.as_ref().is_some_and(Budget::under_pressure)
    }

    /// Takes the reports already queued on the shard, then flushes every open batch, oldest
    /// first: the budget is above its flush mark.
    pub async fn relieve(&mut self, rx: &mut mpsc::UnboundedReceiver<Report>) {
        for _ in 0..PRESSURE_DRAIN {
            match rx.try_recv() {
                Ok(report) => self.add(report).await,
                Err(_) => break,
            }
        }
        let flushed = self.open.len() as u64;
        self.flush_older_than(Duration::ZERO).await;
        self.pressure_flushes.increment(flushed);
    }

    /// Adds one report's spans, flushing its batch when a limit is reached.
    pub async fn add(&mut self, report: Report) {
        let Report {
            key,
            spans,
            mut charge,
            spooled,
        } = report;
        if spans.count == 0 {
            return;
        }
        if let Some(open) = self.open.get(&key)
            && open.bytes + spans.bytes > self.limits.max_bytes
        {
            // The new spans would push the request past the byte limit: send what we have.
            self.flush(&key).await;
        }
        let full = match self.open.get_mut(&key) {
            Some(open) => {
                open.runs.extend(spans.runs);
                open.spans += spans.count;
                open.bytes += spans.bytes;
                open.charge.absorb(charge);
                open.spooled.absorb(spooled);
                open.spans >= self.limits.max_spans || open.bytes >= self.limits.max_bytes
            }
            None => {
                charge.move_to(Part::Batches);
                let full =
                    spans.count >= self.limits.max_spans || spans.bytes >= self.limits.max_bytes;
                let open = OpenBatch {
                    bytes: spans.bytes,
                    spans: spans.count,
                    runs: spans.runs,
                    opened: Instant::now(),
                    charge,
                    spooled,
                };
                self.open.insert(key.clone(), open);
                full
            }
        };
        if full {
            self.flush(&key).await;
        }
    }

    /// Flushes every batch opened at least `age` ago, oldest first.
    pub async fn flush_older_than(&mut self, age: Duration) {
        let now = Instant::now();
        let mut due: Vec<(Instant, BatchKey)> = self
            .open
            .iter()
            .filter(|(_, open)| now.duration_since(open.opened) >= age)
            .map(|(key, open)| (open.opened, key.clone()))
            .collect();
        due.sort_unstable_by_key(|(opened, _)| *opened);
        for (_, key) in due {
            self.flush(&key).await;
        }
    }

    /// Number of batches open now.
    pub fn open_batches(&self) -> usize {
        self.open.len()
    }

    async fn flush(&mut self, key: &BatchKey) {
        let Some((key, open)) = self.open.remove_entry(key) else {
            return;
        };
        let header = key.protocol.batch_header(&key);
        let batch = Batch {
            key,
            header,
            runs: open.runs,
            spans: open.spans,
            charge: open.charge,
            spooled: open.spooled,
        };
        self.sink.submit(batch).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prost::Message;

    use super::*;
    use crate::pipeline::Protocol;
    use crate::pipeline::{Ring, RingConfig};
    use crate::proto::collector as pb;
    use crate::wire::report::scan_report;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<Batch>>>);

    impl BatchSink for Capture {
        async fn submit(&self, batch: Batch) {
            self.0.lock().unwrap().push(batch);
        }
    }

    fn limits(max_spans: u32, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_spans,
            max_bytes,
            max_age: Duration::from_secs(3600),
        }
    }

    fn request(token: &str, reporter_id: u64, span_ids: std::ops::Range<u64>) -> Bytes {
        pb::ReportRequest {
            reporter: Some(pb::Reporter {
                reporter_id,
                tags: vec![],
            }),
            auth: Some(pb::Auth {
                access_token: token.into(),
            }),
            spans: span_ids
                .map(|id| pb::Span {
                    span_context: Some(pb::SpanContext {
                        trace_id: 1,
                        span_id: id,
                        baggage: Default::default(),
                    }),
                    operation_name: format!("op{id}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .encode_to_vec()
        .into()
    }

    fn report(ring: &Ring, buf: Bytes) -> Report {
        let scan = scan_report(&buf, usize::MAX).unwrap();
        Report {
            key: BatchKey {
                protocol: Protocol::Lightstep,
                token: scan.access_token.unwrap_or_default(),
                reporter: scan.reporter,
                timestamp_offset_micros: scan.timestamp_offset_micros,
            },
            charge: ring.reserve(buf.len(), scan.spans.count as u64).unwrap(),
            spans: scan.spans,
            spooled: Default::default(),
        }
    }

    fn decode(batch: &Batch) -> pb::ReportRequest {
        let mut bytes = batch.header.to_vec();
        for run in &batch.runs {
            bytes.extend_from_slice(run);
        }
        assert_eq!(bytes.len(), batch.encoded_len());
        pb::ReportRequest::decode(bytes.as_slice()).unwrap()
    }

    fn ring() -> Ring {
        Ring::new(RingConfig {
            capacity_bytes: 1 << 20,
            high_water: 0.9,
            low_water: 0.5,
            shards: 1,
        })
        .unwrap()
        .0
    }

    #[tokio::test]
    async fn groups_by_token_and_reporter_and_flushes_at_span_limit() {
        let ring = ring();
        let sink = Capture::default();
        let mut batcher = Batcher::new(limits(5, usize::MAX), sink.clone());
        batcher.add(report(&ring, request("a", 1, 0..3))).await;
        batcher.add(report(&ring, request("b", 1, 10..12))).await;
        batcher.add(report(&ring, request("a", 2, 20..21))).await;
        assert_eq!(batcher.open_batches(), 3);
        batcher.add(report(&ring, request("a", 1, 3..5))).await; // reaches 5
        {
            let sent = sink.0.lock().unwrap();
            assert_eq!(sent.len(), 1);
            let req = decode(&sent[0]);
            assert_eq!(req.auth.unwrap().access_token, "a");
            assert_eq!(req.reporter.unwrap().reporter_id, 1);
            let ids: Vec<u64> = req
                .spans
                .iter()
                .map(|s| s.span_context.as_ref().unwrap().span_id)
                .collect();
            assert_eq!(ids, vec![0, 1, 2, 3, 4]);
        }
        batcher.flush_older_than(Duration::ZERO).await;
        let sent = sink.0.lock().unwrap();
        assert_eq!(sent.len(), 3);
        for batch in sent.iter() {
            let req = decode(batch);
            let token = req.auth.unwrap().access_token;
            assert_eq!(token.as_bytes(), &batch.key.token[..]);
        }
    }

    #[tokio::test]
    async fn byte_limit_splits_before_overflowing() {
        let ring = ring();
        let sink = Capture::default();
        let one = request("a", 1, 0..10);
        let span_bytes = scan_report(&one, usize::MAX).unwrap().spans.bytes;
        let mut batcher = Batcher::new(limits(u32::MAX, span_bytes + span_bytes / 2), sink.clone());
        batcher.add(report(&ring, one)).await;
        batcher.add(report(&ring, request("a", 1, 10..20))).await;
        assert_eq!(
            sink.0.lock().unwrap().len(),
            1,
            "first batch flushed before overflow"
        );
        batcher.flush_older_than(Duration::ZERO).await;
        let sent = sink.0.lock().unwrap();
        assert_eq!(
            sent.iter().map(|b| b.spans).collect::<Vec<_>>(),
            vec![10, 10]
        );
    }

    #[tokio::test]
    async fn charge_is_released_when_batch_is_done() {
        let ring = ring();
        let sink = Capture::default();
        let mut batcher = Batcher::new(limits(2, usize::MAX), sink.clone());
        batcher.add(report(&ring, request("a", 1, 0..2))).await;
        assert!(ring.used_bytes() > 0);
        assert_eq!(ring.held_spans(), 2);
        sink.0.lock().unwrap().clear();
        assert_eq!((ring.used_bytes(), ring.held_spans()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn run_flushes_on_age_and_drains_on_cancel() {
        let (ring, mut rxs) = Ring::new(RingConfig {
            capacity_bytes: 1 << 20,
            high_water: 0.9,
            low_water: 0.5,
            shards: 1,
        })
        .unwrap();
        let sink = Capture::default();
        let drain = CancellationToken::new();
        let batcher = Batcher::new(
            BatchLimits {
                max_spans: 1000,
                max_bytes: usize::MAX,
                max_age: Duration::from_millis(100),
            },
            sink.clone(),
        );
        let task = tokio::spawn(batcher.run(rxs.remove(0), drain.clone()));
        let r = report(&ring, request("a", 1, 0..3));
        ring.push(r.key, r.spans, r.charge).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(sink.0.lock().unwrap().len(), 1, "flushed by age");
        let r = report(&ring, request("a", 1, 3..4));
        ring.push(r.key, r.spans, r.charge).unwrap();
        drain.cancel();
        task.await.unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), 2, "flushed on drain");
        let r = report(&ring, request("a", 1, 4..5));
        assert!(ring.push(r.key, r.spans, r.charge).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_open_batches_at_once_whatever_their_age_limit() {
        let (ring, mut rxs) = Ring::new(RingConfig {
            capacity_bytes: 1 << 20,
            high_water: 0.9,
            low_water: 0.5,
            shards: 1,
        })
        .unwrap();
        let sink = Capture::default();
        let (flush_now, drain) = (CancellationToken::new(), CancellationToken::new());
        let batcher = Batcher::new(
            BatchLimits {
                max_spans: 1000,
                max_bytes: usize::MAX,
                max_age: Duration::from_secs(30),
            },
            sink.clone(),
        )
        .flush_at_once_on(flush_now.clone());
        let task = tokio::spawn(batcher.run(rxs.remove(0), drain.clone()));
        let r = report(&ring, request("a", 1, 0..3));
        ring.push(r.key, r.spans, r.charge).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "younger than batch-timeout"
        );
        flush_now.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            sink.0.lock().unwrap().len(),
            1,
            "flushed when shutdown began"
        );
        // Requests still in flight are admitted and sent at once.
        let r = report(&ring, request("a", 1, 3..5));
        ring.push(r.key, r.spans, r.charge).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        drain.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn above_the_flush_mark_open_batches_leave_at_once_oldest_first() {
        let (ring, mut rxs) = Ring::new(RingConfig {
            capacity_bytes: 4096,
            high_water: 0.9,
            low_water: 0.6,
            shards: 1,
        })
        .unwrap();
        let sink = Capture::default();
        let drain = CancellationToken::new();
        // An hour's timeout: only pressure can make these batches leave.
        let batcher =
            Batcher::new(limits(1000, usize::MAX), sink.clone()).with_budget(ring.budget().clone());
        let task = tokio::spawn(batcher.run(rxs.remove(0), drain.clone()));
        let mut reporter = 0;
        while !ring.budget().under_pressure() {
            reporter += 1;
            let r = report(&ring, request("a", reporter, 0..2));
            ring.push(r.key, r.spans, r.charge).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            if reporter < 3 {
                assert_eq!(ring.budget().part_bytes(Part::Batches), ring.used_bytes());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        {
            let sent = sink.0.lock().unwrap();
            let reporters: Vec<u64> = sent
                .iter()
                .map(|b| decode(b).reporter.unwrap().reporter_id)
                .collect();
            assert_eq!(
                reporters,
                (1..=reporter).collect::<Vec<_>>(),
                "all, oldest first"
            );
            assert!(sent.iter().all(|b| b.spans == 2));
        }
        drain.cancel();
        task.await.unwrap();
    }
}
