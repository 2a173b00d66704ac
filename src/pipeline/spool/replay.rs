//! The replay task: reads records waiting on disk (spilled, returned after a long retry, or
//! left by the last run) back into memory, oldest first, whenever the memory budget is below
//! the spill mark; from there they travel like any report, with their ticket.
//!
//! A record that cannot be read back (a read error, or a payload that no longer adds up) is
//! counted as corrupt, logged with its file and offset, and acknowledged: never fatal.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{RecordId, SPILL_MARK, SlotState, Spool, Spooled, record, segment};
use crate::pipeline::{Budget, Part, Report, Ring};

/// How long to wait before looking again when the budget has no room.
const ROOM_POLL: Duration = Duration::from_millis(20);

/// The next record to read back.
struct Waiting {
    record: RecordId,
    reader: Arc<std::fs::File>,
    path: PathBuf,
    offset: u64,
    len: usize,
}

impl Spool {
    /// Reads waiting records back into `ring` until `stop` (or [`Spool::freeze`]).
    pub async fn replay(self, ring: Ring, stop: CancellationToken) {
        loop {
            if stop.is_cancelled() || self.shared.frozen.load(Ordering::Acquire) {
                return;
            }
            let Some(next) = self.next_waiting() else {
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            let Some(mut charge) = room_for(ring.budget(), next.len) else {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(ROOM_POLL) => {}
                }
                continue;
            };
            let Waiting {
                record,
                reader,
                path,
                offset,
                len,
            } = next;
            let read =
                tokio::task::spawn_blocking(move || segment::read_at(&reader, offset, len)).await;
            let decoded = match read {
                Ok(Ok(buf)) => record::decode(Bytes::from(buf)).map_err(|e| e.to_string()),
                Ok(Err(error)) => Err(error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match decoded {
                Ok(decoded) => {
                    if !self.take_waiting(record) {
                        continue;
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
                        return;
                    }
                }
                Err(error) => {
                    self.shared.metrics.corrupt.increment(1);
                    warn!(file = %path.display(), offset, %error, "spool: cannot read a record back; skipped");
                    self.acknowledge(&[record]);
                }
            }
        }
    }

    /// The oldest waiting record, without taking it.
    fn next_waiting(&self) -> Option<Waiting> {
        let state = self.lock();
        let record = *state.pending.first()?;
        let segment = state.segments.get(&record.segment)?;
        let slot = segment.slots.get(record.index as usize)?;
        Some(Waiting {
            record,
            reader: segment.reader.clone(),
            path: segment.path.clone(),
            offset: u64::from(slot.offset),
            len: slot.len as usize,
        })
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
fn room_for(budget: &Budget, len: usize) -> Option<crate::pipeline::Charge> {
    let used = budget.used_bytes();
    let mark = budget.capacity_bytes() as f64 * SPILL_MARK;
    if used > 0 && (used + len) as f64 > mark {
        return None;
    }
    budget.reserve(Part::Ring, len, 0).ok()
}
