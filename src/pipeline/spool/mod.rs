//! The crash-safe spool (`--spool-dir`, `--spool-bytes`): a write-ahead log of every admitted
//! report, so what a client heard OK for survives `kill -9` and restarts, and a place for
//! reports to wait on disk while the memory budget is full.
//!
//! **Writing.** With a spool, [`crate::pipeline::Ring::push`] appends each report's record to
//! the active segment file before it returns, that is before the client hears OK: one
//! vectored `write` of the record's head and the span runs as they are ([`segment`]), under
//! one short lock. Once it returns the record is in the kernel's page cache and survives the
//! process dying at any instruction. Why not a group-commit writer task: the intake is
//! synchronous, so a writer task would cost a channel send, a wake-up and an `.await` in every
//! handler per report, for a `write` that costs about as much as those (the page cache, not
//! the system call, is the cost: BENCHMARKS.md). Why not a memory map: measured slower (a page
//! fault per 4 KiB) and it adds the mapped segment to the resident set. A machine crash
//! or power loss is another matter: cubesat does not `fsync`, so the last seconds of records
//! the kernel had not yet written back (`vm.dirty_expire_centisecs`, 30 s by default) can be
//! lost then. Each record carries its batch key (protocol, access token, encoded reporter,
//! clock offset) and its span runs as bytes, with a CRC-32 ([`record`]). Files are made mode
//! 0600 because they hold access tokens; the token is never logged or counted.
//!
//! **Memory or disk.** A report is kept in memory (and batched at once) while the budget is
//! below [`SPILL_MARK`] and no spilled report is waiting; otherwise it is *spilled*: written
//! to the spool only, its memory given back at once. The [`replay`] task reads spilled
//! records back, oldest first, whenever the budget has room again, so a spool of gigabytes
//! rides out an upstream outage with a small `--buffer-bytes`, in order. A batch whose
//! retries run out (`--retry-max-elapsed`) is not dropped: its records are returned to the
//! spool and read back later ([`Spooled::return_to_spool`]). When the spool has no room the
//! client is refused (503 / `UNAVAILABLE`, counted as `spool_full`).
//!
//! **Acknowledging.** Every report in memory carries a [`Spooled`] ticket through its batch.
//! Delivered, or dropped for good (counted by reason), the ticket acknowledges its record;
//! records complete out of order. Each acknowledgement appends one small frame naming its
//! records to the segment's acknowledgement file ([`acks`]), with one `write` under the same
//! lock, so it survives `kill -9` like the records. A segment whose records are all
//! acknowledged and that is no longer written to is deleted, with that file.
//!
//! **Restart.** [`Spool::open`] reads every segment in the directory, oldest first, and
//! skips the records its acknowledgement file names; each other valid record waits to be
//! replayed before newer ones. Delivery is **at least once**: a record is sent again after a
//! restart only if the process died after the upstream took its batch and before the
//! acknowledgement `write` returned (a window of one system call per batch), or if the
//! machine lost the acknowledgement file's page-cache pages (a crash or power loss), or if
//! writing that file failed (logged once per segment) or it is damaged (reading it stops at
//! the first bad frame). A record with a bad
//! checksum or a torn tail is skipped, counted ([`telemetry::SPOOL_CORRUPT_RECORDS`]) and
//! logged once per file with the file's name and offset, never fatal.
//!
//! **Shutdown.** Whatever is still held when the drain ends is already on disk: [`Spool::freeze`]
//! stops acknowledging, so it is replayed at the next start, not counted as dropped.
//!
//! Memory outside `--buffer-bytes`: 12 bytes per record on disk, one record head (header,
//! token, reporter, run lengths) reused for every write, and one open acknowledgement file
//! per segment with delivered records.

mod acks;
pub mod record;
mod recover;
mod replay;
pub mod segment;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tracing::{info, warn};

use super::{BatchKey, Budget};
use crate::telemetry;
use crate::wire::report::SpanRuns;
use segment::Active;

/// Fraction of the memory budget above which new reports wait on disk instead of in memory.
/// It leaves the other half for request bodies being read, so ingest keeps accepting while
/// the spool has room.
pub const SPILL_MARK: f64 = 0.5;
/// Largest segment file: a segment is deleted only when all its records are delivered, so
/// smaller files give disk back sooner and replay less after a crash.
pub const MAX_SEGMENT_BYTES: usize = 16 << 20;
/// Smallest segment file (unless `--spool-bytes` is smaller).
const MIN_SEGMENT_BYTES: usize = 1 << 20;
/// Fraction of `--spool-bytes` written (records not yet deleted with their segment) from
/// which the spool counts as nearly full and `/_ready` answers 503: the load balancer sends
/// elsewhere before clients are refused. A refused write (no room, or the disk refused a
/// segment) counts as nearly full too, whatever the fill.
pub const READY_HIGH_WATER: f64 = 0.9;
/// Fill below which a nearly full spool counts as having room again.
pub const READY_LOW_WATER: f64 = 0.8;

/// Where the spool lives and how large it may grow, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The directory of segment files (`--spool-dir`).
    pub dir: PathBuf,
    /// The most bytes of segment files on disk (`--spool-bytes`).
    pub limit_bytes: u64,
}

/// Why a report could not be written to the spool; the client is told to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpoolFull {
    /// `--spool-bytes` is used up.
    #[error("spool full: {needed} bytes needed, {free} of {limit} free (--spool-bytes)")]
    Limit {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes free.
        free: u64,
        /// `--spool-bytes`.
        limit: u64,
    },
    /// The spool directory refused a new segment (a full disk, most often).
    #[error("spool directory cannot take a new segment: {0}")]
    Disk(std::io::ErrorKind),
}

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The directory could not be made or read.
    #[error("spool directory {dir}: {source}")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A record's place: its segment and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecordId {
    segment: u64,
    index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    /// In memory, on its way upstream.
    Held,
    /// On disk only, waiting to be read back.
    Pending,
    /// Delivered or dropped for good.
    Done,
}

#[derive(Debug)]
struct Slot {
    offset: u32,
    len: u32,
    state: SlotState,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    reader: Arc<File>,
    slots: Vec<Slot>,
    live: u32,
    /// Bytes on disk (for the active one: reserved).
    disk_bytes: u64,
    /// Bytes of records in it.
    record_bytes: u64,
    /// When its first record was written (or the file found).
    started: SystemTime,
    /// Its acknowledgement file, once a record in it was acknowledged ([`acks`]).
    acks: Option<File>,
    /// Writing its acknowledgements failed (logged once): they are no longer written.
    acks_failed: bool,
}

#[derive(Debug, Default)]
struct State {
    active: Option<Active>,
    segments: BTreeMap<u64, Segment>,
    pending: BTreeSet<RecordId>,
    disk_bytes: u64,
    record_bytes: u64,
    live: u64,
    next_id: u64,
    /// The record head being written (reused: no allocation per report).
    head: Vec<u8>,
    /// The offsets being acknowledged in one segment, and their frame (reused).
    ack_offsets: Vec<u32>,
    ack_frame: Vec<u8>,
}

#[derive(Debug)]
struct Metrics {
    bytes: metrics::Gauge,
    records: metrics::Gauge,
    replayed: metrics::Counter,
    spilled: metrics::Counter,
    corrupt: metrics::Counter,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    limit: u64,
    segment_bytes: usize,
    state: Mutex<State>,
    frozen: AtomicBool,
    /// Above [`READY_HIGH_WATER`] or refusing, until back below [`READY_LOW_WATER`].
    nearly_full: AtomicBool,
    pending: AtomicUsize,
    wake: Notify,
    metrics: Metrics,
}

/// The spool; cheap to clone, shared by the ring (writes), batches (acknowledgements) and
/// the replay task.
#[derive(Debug, Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

/// What [`Spool::open`] found in the directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Segment files read.
    pub segments: usize,
    /// Valid records waiting to be replayed.
    pub records: usize,
    /// Valid records skipped because their acknowledgement file says they were delivered.
    pub delivered: usize,
    /// Damaged stretches skipped.
    pub corrupt: usize,
}

/// What `/diagnostics` shows of the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    /// The directory.
    pub dir: PathBuf,
    /// Bytes of records on disk.
    pub bytes: u64,
    /// `--spool-bytes`.
    pub limit_bytes: u64,
    /// Records not yet delivered.
    pub records: u64,
    /// Of those, records on disk only, waiting to be read back.
    pub waiting: u64,
    /// Age of the oldest segment that still holds a record.
    pub oldest: Option<Duration>,
}

impl Spool {
    /// Opens (making it if needed) the spool in `config.dir` and reads back every segment
    /// found there: their records are replayed before newer ones.
    pub fn open(config: &SpoolConfig) -> Result<(Spool, Recovered), SpoolError> {
        let dir_error = |source| SpoolError::Dir {
            dir: config.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.dir).map_err(dir_error)?;
        let limit = config.limit_bytes;
        let segment_bytes =
            ((limit / 16) as usize).clamp(MIN_SEGMENT_BYTES.min(limit as usize), MAX_SEGMENT_BYTES);
        metrics::gauge!(telemetry::SPOOL_CAPACITY_BYTES).set(limit as f64);
        let spool = Spool {
            shared: Arc::new(Shared {
                dir: config.dir.clone(),
                limit,
                segment_bytes: segment_bytes.max(1),
                state: Mutex::new(State::default()),
                frozen: AtomicBool::new(false),
                nearly_full: AtomicBool::new(false),
                pending: AtomicUsize::new(0),
                wake: Notify::new(),
                metrics: Metrics {
                    bytes: metrics::gauge!(telemetry::SPOOL_BYTES),
                    records: metrics::gauge!(telemetry::SPOOL_RECORDS),
                    replayed: metrics::counter!(telemetry::SPOOL_REPLAYED_RECORDS),
                    spilled: metrics::counter!(telemetry::SPOOL_SPILLED_RECORDS),
                    corrupt: metrics::counter!(telemetry::SPOOL_CORRUPT_RECORDS),
                },
            }),
        };
        let found = segment::list(&config.dir).map_err(dir_error)?;
        // Acknowledgements whose segment is gone: delete them before a new segment takes
        // the number (they would skip its records).
        for (id, path) in acks::list(&config.dir).map_err(dir_error)? {
            if found
                .binary_search_by_key(&id, |(found, _)| *found)
                .is_err()
            {
                std::fs::remove_file(path).map_err(dir_error)?;
            }
        }
        let mut recovered = Recovered::default();
        {
            let mut state = spool.lock();
            for (id, path) in found {
                state.next_id = state.next_id.max(id + 1);
                recovered.segments += 1;
                spool.recover(&mut state, id, path, &mut recovered);
            }
            spool.publish(&state);
        }
        spool
            .shared
            .pending
            .store(recovered.records, Ordering::Release);
        if recovered.segments > 0 {
            info!(
                dir = %config.dir.display(),
                segments = recovered.segments,
                records = recovered.records,
                delivered = recovered.delivered,
                corrupt = recovered.corrupt,
                "spool: replaying {} records left by the last run",
                recovered.records
            );
        }
        Ok((spool, recovered))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough counters; keep going.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, state: &State) {
        let m = &self.shared.metrics;
        m.bytes.set(state.record_bytes as f64);
        m.records.set(state.live as f64);
        // Written bytes: what is reserved on disk less the active segment's unwritten room.
        let room = state.active.as_ref().map_or(0, Active::room) as u64;
        let filled = state.disk_bytes.saturating_sub(room) as f64;
        let limit = self.shared.limit as f64;
        if filled >= limit * READY_HIGH_WATER {
            self.shared.nearly_full.store(true, Ordering::Release);
        } else if filled < limit * READY_LOW_WATER {
            self.shared.nearly_full.store(false, Ordering::Release);
        }
    }

    /// True from the fill reaching [`READY_HIGH_WATER`] of `--spool-bytes` (or a write being
    /// refused) until it falls back below [`READY_LOW_WATER`]: `/_ready` answers 503 then.
    pub fn is_nearly_full(&self) -> bool {
        self.shared.nearly_full.load(Ordering::Acquire)
    }

    /// Whether a report of the budget's should be kept in memory now rather than spilled:
    /// nothing spilled is waiting (order), and the budget is below [`SPILL_MARK`].
    pub fn keeps_in_memory(&self, budget: &Budget) -> bool {
        self.shared.pending.load(Ordering::Acquire) == 0
            && budget.used_bytes() as f64 <= budget.capacity_bytes() as f64 * SPILL_MARK
    }

    /// Writes a report's record. `hold`: it stays in memory too, and the returned ticket
    /// acknowledges the record when dropped; otherwise it waits on disk to be replayed.
    pub fn write(
        &self,
        key: &BatchKey,
        spans: &SpanRuns,
        hold: bool,
    ) -> Result<Spooled, SpoolFull> {
        let len = record::encoded_len(key, spans);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.active.as_ref().is_none_or(|a| a.room() < len)
            && let Err(full) = self.rotate(state, len)
        {
            self.shared.nearly_full.store(true, Ordering::Release);
            return Err(full);
        }
        let Some(active) = state.active.as_mut() else {
            return Err(SpoolFull::Disk(std::io::ErrorKind::Other));
        };
        record::encode_head(&mut state.head, key, spans, now);
        let offset = match active.append(len, &state.head, &spans.runs) {
            Ok(offset) => offset,
            Err(error) => {
                warn!(dir = %self.shared.dir.display(), %error, "spool: cannot write a record; starting a new segment");
                self.seal_active(state);
                self.shared.nearly_full.store(true, Ordering::Release);
                return Err(SpoolFull::Disk(error.kind()));
            }
        };
        let id = active.id;
        let Some(segment) = state.segments.get_mut(&id) else {
            return Err(SpoolFull::Disk(std::io::ErrorKind::Other));
        };
        let index = segment.slots.len() as u32;
        segment.slots.push(Slot {
            offset: offset as u32,
            len: len as u32,
            state: if hold {
                SlotState::Held
            } else {
                SlotState::Pending
            },
        });
        segment.live += 1;
        segment.record_bytes += len as u64;
        state.record_bytes += len as u64;
        state.live += 1;
        let record = RecordId { segment: id, index };
        if !hold {
            state.pending.insert(record);
            self.shared.pending.fetch_add(1, Ordering::AcqRel);
            self.shared.metrics.spilled.increment(1);
        }
        self.publish(state);
        drop(guard);
        if hold {
            Ok(Spooled::one(self.shared.clone(), record))
        } else {
            self.shared.wake.notify_one();
            Ok(Spooled::default())
        }
    }

    /// Seals the active segment and starts a new one with room for `need` bytes.
    fn rotate(&self, state: &mut State, need: usize) -> Result<(), SpoolFull> {
        self.seal_active(state);
        let free = self.shared.limit.saturating_sub(state.disk_bytes);
        if need as u64 > free {
            return Err(SpoolFull::Limit {
                needed: need as u64,
                free,
                limit: self.shared.limit,
            });
        }
        let capacity = (self.shared.segment_bytes as u64)
            .min(free)
            .max(need as u64) as usize;
        let id = state.next_id;
        state.next_id += 1;
        let made = Active::create(&self.shared.dir, id, capacity)
            .and_then(|active| Ok((active.reader()?, active)));
        let (reader, active) = made.map_err(|error| {
            warn!(dir = %self.shared.dir.display(), %error, "spool: cannot make a new segment");
            SpoolFull::Disk(error.kind())
        })?;
        state.disk_bytes += capacity as u64;
        state.segments.insert(
            id,
            Segment {
                path: segment::path(&self.shared.dir, id),
                reader: Arc::new(reader),
                slots: Vec::new(),
                live: 0,
                disk_bytes: capacity as u64,
                record_bytes: 0,
                started: SystemTime::now(),
                acks: None,
                acks_failed: false,
            },
        );
        state.active = Some(active);
        Ok(())
    }

    /// Stops writing the active segment (deleted at once if all its records are done).
    fn seal_active(&self, state: &mut State) {
        let Some(active) = state.active.take() else {
            return;
        };
        let id = active.id;
        let written = active.len as u64;
        let reserved = active.capacity() as u64;
        active.seal();
        state.disk_bytes -= reserved - written;
        if let Some(segment) = state.segments.get_mut(&id) {
            segment.disk_bytes = written;
            if segment.live == 0 {
                self.delete(state, id);
            }
        }
    }

    /// Removes a segment whose records are all done.
    fn delete(&self, state: &mut State, id: u64) {
        if let Some(segment) = state.segments.remove(&id) {
            state.disk_bytes -= segment.disk_bytes;
            state.record_bytes -= segment.record_bytes;
            if let Err(error) = std::fs::remove_file(&segment.path) {
                warn!(file = %segment.path.display(), %error, "spool: cannot delete a finished segment");
            } else if let Err(error) = acks::remove(&self.shared.dir, id) {
                // Deleted at the next start, before its number is used again.
                warn!(segment = id, %error, "spool: cannot delete a finished segment's acknowledgements");
            }
        }
    }

    /// Marks records done (delivered or dropped for good), deleting finished segments and
    /// writing one acknowledgement frame per other segment touched ([`acks`]).
    fn acknowledge(&self, records: &[RecordId]) {
        if self.shared.frozen.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut offsets = std::mem::take(&mut state.ack_offsets);
        let mut current = None;
        for record in records {
            if current != Some(record.segment) {
                if let Some(id) = current {
                    self.persist_acks(state, id, &offsets);
                }
                offsets.clear();
                current = Some(record.segment);
            }
            let Some(segment) = state.segments.get_mut(&record.segment) else {
                continue;
            };
            let Some(slot) = segment.slots.get_mut(record.index as usize) else {
                continue;
            };
            if slot.state == SlotState::Done {
                continue;
            }
            if slot.state == SlotState::Pending && state.pending.remove(record) {
                self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            }
            slot.state = SlotState::Done;
            offsets.push(slot.offset);
            segment.live -= 1;
            let finished = segment.live == 0;
            state.live -= 1;
            let active = state.active.as_ref().map(|a| a.id);
            if finished && active != Some(record.segment) {
                self.delete(state, record.segment);
            }
        }
        if let Some(id) = current {
            self.persist_acks(state, id, &offsets);
        }
        offsets.clear();
        state.ack_offsets = offsets;
        self.publish(state);
    }

    /// Appends the frame acknowledging `offsets` to segment `id`'s acknowledgement file,
    /// unless the segment is gone (deleted: nothing of it is replayed).
    fn persist_acks(&self, state: &mut State, id: u64, offsets: &[u32]) {
        let Some(segment) = state.segments.get_mut(&id) else {
            return;
        };
        if offsets.is_empty() || segment.acks_failed {
            return;
        }
        acks::encode(&mut state.ack_frame, offsets);
        let written = match &mut segment.acks {
            Some(file) => file.write_all(&state.ack_frame),
            None => acks::open(&self.shared.dir, id)
                .and_then(|file| segment.acks.insert(file).write_all(&state.ack_frame)),
        };
        if let Err(error) = written {
            warn!(file = %acks::path(&self.shared.dir, id).display(), %error, "spool: cannot write acknowledgements; after a restart this segment's delivered records are sent again");
            segment.acks = None;
            segment.acks_failed = true;
        }
    }

    /// Puts records back on the waiting list (their memory is given back by the caller).
    fn requeue(&self, records: &[RecordId]) {
        if self.shared.frozen.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut added = 0;
        for record in records {
            let slot = state
                .segments
                .get_mut(&record.segment)
                .and_then(|s| s.slots.get_mut(record.index as usize));
            if let Some(slot) = slot.filter(|slot| slot.state == SlotState::Held) {
                slot.state = SlotState::Pending;
                state.pending.insert(*record);
                added += 1;
            }
        }
        drop(guard);
        self.shared.pending.fetch_add(added, Ordering::AcqRel);
        self.shared.wake.notify_one();
    }

    /// Stops acknowledging (shutdown): what is still held stays on disk for the next start.
    pub fn freeze(&self) {
        self.shared.frozen.store(true, Ordering::Release);
    }

    /// Records on disk only, waiting to be read back.
    pub fn waiting_records(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What `/diagnostics` shows.
    pub fn status(&self) -> SpoolStatus {
        let state = self.lock();
        let oldest = state
            .segments
            .values()
            .find(|s| s.live > 0)
            .and_then(|s| s.started.elapsed().ok());
        SpoolStatus {
            dir: self.shared.dir.clone(),
            bytes: state.record_bytes,
            limit_bytes: self.shared.limit,
            records: state.live,
            waiting: state.pending.len() as u64,
            oldest,
        }
    }
}

/// The spool records a report or a batch holds: acknowledged when dropped (delivered, or
/// dropped for good), unless returned to the spool first or the spool is frozen.
#[derive(Debug, Default)]
pub struct Spooled {
    spool: Option<Arc<Shared>>,
    records: Vec<RecordId>,
    returned: AtomicBool,
}

impl Spooled {
    fn one(shared: Arc<Shared>, record: RecordId) -> Self {
        Spooled {
            spool: Some(shared),
            records: vec![record],
            returned: AtomicBool::new(false),
        }
    }

    /// Takes over `other`'s records (a report joining a batch).
    pub fn absorb(&mut self, mut other: Spooled) {
        if other.records.is_empty() {
            return;
        }
        if self.spool.is_none() {
            self.spool = other.spool.take();
        }
        self.records.append(&mut other.records);
    }

    /// True when it holds spool records (its spans are safe on disk).
    pub fn is_spooled(&self) -> bool {
        !self.records.is_empty()
    }

    /// Puts the records back on the spool's waiting list instead of acknowledging them (a
    /// batch whose retries ran out); true when there were any.
    pub fn return_to_spool(&self) -> bool {
        let Some(shared) = &self.spool else {
            return false;
        };
        if self.records.is_empty() || self.returned.swap(true, Ordering::AcqRel) {
            return false;
        }
        Spool {
            shared: shared.clone(),
        }
        .requeue(&self.records);
        true
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        if let Some(shared) = self.spool.take()
            && !self.records.is_empty()
            && !self.returned.load(Ordering::Acquire)
        {
            Spool { shared }.acknowledge(&self.records);
        }
    }
}
