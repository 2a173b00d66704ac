//! The replay task: reads records waiting on disk (spilled, returned after a long retry, or
//! left by the last run) back into memory, oldest first, whenever the memory budget is below
//! the spill mark; from there they travel like any report, with their ticket.
//!
//! Records are read in chunks: up to [`CHUNK_RECORDS`] records or [`CHUNK_BYTES`] bytes, as
//! many as the budget has room for, per call on the blocking pool, one positioned read (from
//! the page cache, most often) per record. One blocking-pool round trip per record capped
//! replay at what the hand-off costs, not what the reads cost (BENCHMARKS.md). Each record
//! still gets a buffer of its own, charged to the budget before it is read: a buffer shared by
//! a chunk would be pinned whole by its slowest record.
//!
//! A record that cannot be read back (a read error, or a payload that no longer adds up) is
//! counted as corrupt, logged with its file and offset, and acknowledged: never fatal.

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{RecordId, SPILL_MARK, SlotState, Spool, Spooled, record, segment};
use crate::pipeline::{Budget, Charge, Part, Report, Ring};

/// How long to wait before looking again when the budget has no room.
const ROOM_POLL: Duration = Duration::from_millis(20);
/// Most record bytes read back per blocking call (a record larger than this is read alone).
pub const CHUNK_BYTES: usize = 1 << 20;
/// Most records read back per blocking call.
pub const CHUNK_RECORDS: usize = 256;

/// A record to read back: where it is and how long.
struct Waiting {
    record: RecordId,
    reader: Arc<File>,
    offset: u64,
    len: usize,
}

impl Spool {
    /// Reads waiting records back into `ring` until `stop` (or [`Spool::freeze`]).
    pub async fn replay(self, ring: Ring, stop: CancellationToken) {
        let mut chunk = Vec::with_capacity(CHUNK_RECORDS);
        loop {
            if stop.is_cancelled() || self.shared.frozen.load(Ordering::Acquire) {
                return;
            }
            self.next_waiting(&mut chunk);
            if chunk.is_empty() {
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            // Charged before they are read; the chunk stops where the budget has no room.
            let charges: Vec<Charge> = chunk
                .iter()
                .map_while(|waiting| room_for(ring.budget(), waiting.len))
                .collect();
            if charges.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ROOM_POLL) => {}
                }
                continue;
            }
            chunk.truncate(charges.len());
            let reads: Vec<(Arc<File>, u64, usize)> = chunk
                .iter()
                .map(|w| (w.reader.clone(), w.offset, w.len))
                .collect();
            let read = tokio::task::spawn_blocking(move || {
                reads
                    .iter()
                    .map(|(reader, offset, len)| segment::read_at(reader, *offset, *len))
                    .collect::<Vec<_>>()
            })
            .await;
            let mut read = match read {
                Ok(read) => read.into_iter().map(|r| r.map_err(|e| e.to_string())),
                Err(error) => {
                    // The blocking call did not finish (the runtime is shutting down): the
                    // records were not taken, they stay waiting.
                    warn!(%error, "spool: cannot read records back; trying again");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(ROOM_POLL) => {}
                    }
                    continue;
                }
            };
            for (waiting, charge) in chunk.drain(..).zip(charges) {
                let buf = read.next().unwrap_or_else(|| Err("not read".into()));
                if !self.replay_one(&ring, waiting, charge, buf) {
                    return;
                }
            }
        }
    }

    /// Sends one record read back into `ring` (or counts it corrupt); false when shutting down.
    fn replay_one(
        &self,
        ring: &Ring,
        waiting: Waiting,
        mut charge: Charge,
        buf: Result<Vec<u8>, String>,
    ) -> bool {
        let Waiting { record, offset, .. } = waiting;
        let decoded =
            buf.and_then(|buf| record::decode(Bytes::from(buf)).map_err(|e| e.to_string()));
        match decoded {
            Ok(decoded) => {
                if !self.take_waiting(record) {
                    return true;
                }
                charge.hold_spans(u64::from(decoded.spans.count));
                self.shared.metrics.replayed.increment(1);
                let report = Report {
                    key: decoded.key,
                    spans: decoded.spans,
                    charge,
                    spooled: Spooled::one(self.shared.clone(), record),
                };
                if let Err(report) = ring.send(report) {
                    // Shutting down: it stays on disk for the next start.
                    report.spooled.return_to_spool();
                    return false;
                }
            }
            Err(error) => {
                self.shared.metrics.corrupt.increment(1);
                let path = segment::path(&self.shared.dir, record.segment);
                warn!(file = %path.display(), offset, %error, "spool: cannot read a record back; skipped");
                self.acknowledge(&[record]);
            }
        }
        true
    }

    /// Fills `chunk` with the oldest waiting records, without taking them: at most
    /// [`CHUNK_RECORDS`], and [`CHUNK_BYTES`] unless the first alone is larger.
    fn next_waiting(&self, chunk: &mut Vec<Waiting>) {
        chunk.clear();
        let state = self.lock();
        let mut bytes = 0;
        for record in state.pending.iter().take(CHUNK_RECORDS) {
            let Some(segment) = state.segments.get(&record.segment) else {
                continue;
            };
            let Some(slot) = segment.slots.get(record.index as usize) else {
                continue;
            };
            let len = slot.len as usize;
            if !chunk.is_empty() && bytes + len > CHUNK_BYTES {
                break;
            }
            bytes += len;
            chunk.push(Waiting {
                record: *record,
                reader: segment.reader.clone(),
                offset: u64::from(slot.offset),
                len,
            });
        }
    }

    /// Moves a waiting record to memory; false if it is no longer waiting.
    fn take_waiting(&self, record: RecordId) -> bool {
        let mut guard = self.lock();
        let state = &mut *guard;
        if !state.pending.remove(&record) {
            return false;
        }
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
        let slot = state
            .segments
            .get_mut(&record.segment)
            .and_then(|s| s.slots.get_mut(record.index as usize));
        if let Some(slot) = slot {
            slot.state = SlotState::Held;
        }
        true
    }
}

/// A charge for a record of `len` bytes read back, if the budget is below the spill mark with
/// it (or empty, so a record larger than the mark still gets through).
fn room_for(budget: &Budget, len: usize) -> Option<Charge> {
    let used = budget.used_bytes();
    let mark = budget.capacity_bytes() as f64 * SPILL_MARK;
    if used > 0 && (used + len) as f64 > mark {
        return None;
    }
    budget.reserve(Part::Ring, len, 0).ok()
}
