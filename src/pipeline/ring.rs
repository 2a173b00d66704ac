//! The ring: many producers push reports, one or more batchers pull them, and every byte in
//! between is paid for out of one budget.
//!
//! The ring has a preallocated region ([`Ring::new`], what `cubesat serve` runs): gRPC
//! request messages are read straight into it at ingest (`ingest/grpc/message.rs`), and any
//! other pushed report's span runs are copied into it once, freeing the request buffer they
//! came from; the report's charge then shrinks to the bytes of its spans. Either way its spans
//! travel on as slices of the region. When the region has no contiguous room the report keeps
//! its request slices and its whole charge (counted in [`telemetry::RING_FALLBACKS`]).
//! [`Ring::without_arena`] is the design without a region, kept for side-by-side benchmarks.
//!
//! A report's [`Charge`] stays with its spans through batching, sending and retrying, and is
//! returned when they are delivered or dropped, so the budget bounds all memory the pipeline
//! holds. Above the high-water mark the ring reports "not ready" until it falls back below the
//! low-water mark, so load balancers shift traffic before clients are refused.
//!
//! With a spool ([`Ring::with_spool`], `--spool-dir`), a push first writes the report to disk
//! and, past the spill mark, leaves it there instead of in memory ([`super::spool`]).

use std::hash::BuildHasher;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::arena::{Arena, RegionError};
use super::budget::{Budget, BudgetFull, Charge, Part};
use super::spool::{Spool, SpoolFull, Spooled};
use super::{BatchKey, Report};
use crate::telemetry;
use crate::wire::report::SpanRuns;

/// Limits of the ring, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Byte budget for everything between ingest and upstream.
    pub capacity_bytes: usize,
    /// Fraction of the budget above which the ring is not ready.
    pub high_water: f64,
    /// Fraction of the budget the ring must fall below to be ready again.
    pub low_water: f64,
    /// How many batchers the reports are spread over (by batch key).
    pub shards: usize,
}

/// Why a report could not be pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The budget has no room for the report.
    #[error("buffer full: {needed} bytes requested, {free} of {capacity} free")]
    Full {
        /// Bytes the report needs.
        needed: usize,
        /// Bytes free.
        free: usize,
        /// The whole budget.
        capacity: usize,
    },
    /// The pipeline is draining for shutdown.
    #[error("shutting down")]
    Closed,
    /// The spool (`--spool-dir`) has no room for the report.
    #[error(transparent)]
    Spool(#[from] SpoolFull),
}

impl From<BudgetFull> for PushError {
    fn from(full: BudgetFull) -> Self {
        PushError::Full {
            needed: full.needed,
            free: full.free,
            capacity: full.capacity,
        }
    }
}

/// The producer side of the ring; cheap to clone, shared by every ingest handler.
#[derive(Debug, Clone)]
pub struct Ring {
    budget: Budget,
    shards: Arc<[mpsc::UnboundedSender<Report>]>,
    hasher: std::collections::hash_map::RandomState,
    arena: Option<Arena>,
    fallbacks: metrics::Counter,
    spool: Option<Spool>,
}

impl Ring {
    /// Makes a ring with its region and the receivers its batchers read, one per shard.
    pub fn new(
        config: RingConfig,
    ) -> Result<(Ring, Vec<mpsc::UnboundedReceiver<Report>>), RegionError> {
        let arena = Arena::new(config.capacity_bytes)?;
        let (mut ring, receivers) = Ring::without_arena(config);
        ring.arena = Some(arena);
        Ok((ring, receivers))
    }

    /// A ring whose reports stay slices of their request buffers (no region, no copy): the
    /// design before the region, for side-by-side benchmarks and tests that need no region.
    pub fn without_arena(config: RingConfig) -> (Ring, Vec<mpsc::UnboundedReceiver<Report>>) {
        let budget = Budget::new(config.capacity_bytes, config.high_water, config.low_water);
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.shards.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let ring = Ring {
            budget,
            shards: senders.into(),
            hasher: Default::default(),
            arena: None,
            fallbacks: metrics::counter!(telemetry::RING_FALLBACKS),
            spool: None,
        };
        (ring, receivers)
    }

    /// Writes every pushed report to `spool` before [`Ring::push`] returns (so before the
    /// client hears OK), and lets reports wait there while the budget is past its spill mark.
    pub fn with_spool(mut self, spool: Spool) -> Self {
        self.spool = Some(spool);
        self
    }

    /// Reserves `bytes` of budget for a report of `spans` spans (the request buffer it slices).
    /// With a spool, a report the budget cannot hold gets a charge of no bytes: it is spilled.
    pub fn reserve(&self, bytes: usize, spans: u64) -> Result<Charge, PushError> {
        match self.budget.reserve(Part::Ring, bytes, spans) {
            Err(_) if self.spool.is_some() => Ok(self.budget.reserve(Part::Ring, 0, spans)?),
            reserved => Ok(reserved?),
        }
    }

    /// The one memory budget the ring draws from, shared with ingest and the exporter.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Hands a report to the batcher that owns its key. Its charge is returned on failure.
    pub fn push(
        &self,
        key: BatchKey,
        spans: SpanRuns,
        mut charge: Charge,
    ) -> Result<(), PushError> {
        // Whatever part it was reserved for (a body read at ingest), it is held by the ring now.
        charge.move_to(Part::Ring);
        let Some(spooled) = self.spool_write(&key, &spans, &charge)? else {
            return Ok(());
        };
        let spans = self.copy_in(spans, &mut charge);
        let report = Report {
            key,
            spans,
            charge,
            spooled,
        };
        self.send(report).map_err(|_| PushError::Closed)
    }

    /// Hands a report to the batcher that owns its key; gives it back when the batchers are
    /// gone (shutdown).
    pub fn send(&self, report: Report) -> Result<(), Box<Report>> {
        let shard = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(&report.key) % self.shards.len() as u64) as usize
        };
        self.shards[shard]
            .send(report)
            .map_err(|refused| Box::new(refused.0))
    }

    /// With a spool, writes the report's record: `Some(ticket)` when it stays in memory too,
    /// `None` when it was spilled (it waits on disk; the caller drops its memory). Without a
    /// spool, an empty ticket.
    fn spool_write(
        &self,
        key: &BatchKey,
        spans: &SpanRuns,
        charge: &Charge,
    ) -> Result<Option<Spooled>, PushError> {
        let Some(spool) = &self.spool else {
            return Ok(Some(Spooled::default()));
        };
        let hold = charge.bytes() > 0 && spool.keeps_in_memory(&self.budget);
        let spooled = spool.write(key, spans, hold)?;
        Ok(hold.then_some(spooled))
    }

    /// Writes the runs into the region (once) and charges only their bytes; unchanged when
    /// there is no region or no room in it.
    fn copy_in(&self, spans: SpanRuns, charge: &mut Charge) -> SpanRuns {
        let Some(arena) = &self.arena else {
            return spans;
        };
        if spans.runs.iter().all(|run| arena.holds(run)) {
            // Read straight into the region (a gRPC message): already where it stays.
            return spans;
        }
        let Some((record, offsets)) = arena.write(&spans.runs) else {
            if spans.bytes > 0 {
                self.fallbacks.increment(1);
            }
            return spans;
        };
        // The per-report overhead (handles, batch entries) stays charged beside the spans.
        charge.shrink(
            charge
                .bytes()
                .saturating_sub(record.len() + super::REPORT_OVERHEAD),
        );
        let runs = spans
            .runs
            .iter()
            .zip(offsets)
            .map(|(run, at)| record.slice(at..at + run.len()))
            .collect();
        SpanRuns { runs, ..spans }
    }

    /// The preallocated region reports are written into, if the ring has one.
    pub fn arena(&self) -> Option<&Arena> {
        self.arena.as_ref()
    }

    /// The spool every report is written to, if any.
    pub fn spool(&self) -> Option<&Spool> {
        self.spool.as_ref()
    }

    /// Bytes in use now.
    pub fn used_bytes(&self) -> usize {
        self.budget.used_bytes()
    }

    /// Spans held now, from ingest until delivered or dropped.
    pub fn held_spans(&self) -> u64 {
        self.budget.held_spans()
    }

    /// The byte budget.
    pub fn capacity_bytes(&self) -> usize {
        self.budget.capacity_bytes()
    }

    /// False from crossing the high-water mark until falling back below the low-water mark.
    pub fn has_headroom(&self) -> bool {
        self.budget.has_headroom()
    }
}

#[cfg(test)]
mod tests {
    use super::super::REPORT_OVERHEAD;
    use super::*;
    use bytes::Bytes;

    fn ring(capacity: usize) -> (Ring, Vec<mpsc::UnboundedReceiver<Report>>) {
        Ring::new(RingConfig {
            capacity_bytes: capacity,
            high_water: 0.8,
            low_water: 0.5,
            shards: 2,
        })
        .unwrap()
    }

    fn key(token: &'static [u8]) -> BatchKey {
        BatchKey {
            protocol: super::super::Protocol::Lightstep,
            token: Bytes::from_static(token),
            reporter: Bytes::from_static(b"r"),
            timestamp_offset_micros: 0,
        }
    }

    #[test]
    fn budget_is_enforced_and_returned_on_drop() {
        let (ring, _rx) = ring(100);
        let a = ring.reserve(60, 3).unwrap();
        assert_eq!(
            ring.reserve(50, 1).unwrap_err(),
            PushError::Full {
                needed: 50,
                free: 40,
                capacity: 100
            }
        );
        assert_eq!((ring.used_bytes(), ring.held_spans()), (60, 3));
        drop(a);
        assert_eq!((ring.used_bytes(), ring.held_spans()), (0, 0));
        assert!(ring.reserve(100, 1).is_ok());
    }

    #[test]
    fn same_key_goes_to_same_shard_and_closed_ring_refuses() {
        let (ring, mut rx) = ring(1000);
        for _ in 0..4 {
            let charge = ring.reserve(1, 1).unwrap();
            ring.push(key(b"t"), SpanRuns::default(), charge).unwrap();
        }
        let counts: Vec<usize> = rx.iter_mut().map(|r| r.len()).collect();
        assert!(counts == vec![4, 0] || counts == vec![0, 4], "{counts:?}");
        for r in rx.iter_mut() {
            r.close();
        }
        let charge = ring.reserve(1, 1).unwrap();
        assert_eq!(
            ring.push(key(b"t"), SpanRuns::default(), charge),
            Err(PushError::Closed)
        );
    }

    #[test]
    fn a_pushed_report_is_copied_once_into_the_region_and_charged_for_its_spans() {
        let (ring, mut rx) = ring(1 << 20);
        let request = Bytes::from(vec![7u8; 4096]);
        let spans = SpanRuns {
            runs: vec![request.slice(10..12), request.slice(100..103)],
            count: 2,
            bytes: 5,
        };
        let charge = ring.reserve(request.len() + REPORT_OVERHEAD, 2).unwrap();
        ring.push(key(b"t"), spans, charge).unwrap();
        let report = rx.iter_mut().find_map(|r| r.try_recv().ok()).unwrap();
        assert_eq!(
            report.charge.bytes(),
            5 + REPORT_OVERHEAD,
            "charged for its spans and the report's overhead, not the request"
        );
        assert_eq!(ring.budget().part_bytes(Part::Ring), 5 + REPORT_OVERHEAD);
        let within = |b: &Bytes| request.as_ptr_range().contains(&b.as_ptr());
        assert!(
            !report.spans.runs.iter().any(within),
            "no slice pins the request"
        );
        assert_eq!(
            report
                .spans
                .runs
                .iter()
                .map(|r| r.to_vec())
                .collect::<Vec<_>>(),
            vec![vec![7u8; 2], vec![7u8; 3]]
        );
        drop(report);
        assert_eq!((ring.used_bytes(), ring.held_spans()), (0, 0));
    }

    #[test]
    fn a_batch_moves_out_of_the_region_before_a_retry_with_the_same_bytes() {
        let (ring, _rx) = ring(1 << 20);
        let region = ring.arena().unwrap();
        let (record, _) = region
            .write(&[Bytes::from_static(b"span-a span-b")])
            .unwrap();
        let mut batch = super::super::Batch {
            key: key(b"t"),
            header: Bytes::from_static(b"h"),
            runs: vec![
                record.slice(0..6),
                Bytes::from_static(b"heap"),
                record.slice(7..),
            ],
            spans: 3,
            charge: ring.reserve(17, 3).unwrap(),
            spooled: Spooled::default(),
        };
        drop(record);
        assert_eq!(region.used(), 13);
        batch.move_out_of(region);
        assert_eq!(region.used(), 0, "the region's room is back");
        assert!(!batch.runs.iter().any(|run| region.holds(run)));
        let runs: Vec<&[u8]> = batch.runs.iter().map(|run| &run[..]).collect();
        assert_eq!(runs, [&b"span-a"[..], b"heap", b"span-b"]);
        assert_eq!(batch.encoded_len(), 17);
    }
}
