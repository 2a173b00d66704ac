//! The one memory budget (`--buffer-bytes`) that every byte between the socket and the upstream
//! is paid from, before it is allocated.
//!
//! A [`Charge`] is a share of the budget tagged with the [`Part`] of the path that holds it: a
//! request body while it is read (`in_flight`), a report written into the ring, an open batch,
//! a request on its way upstream. A charge moves from part to part as its bytes move along the
//! path and is returned exactly once, when it is dropped. Above the high-water mark the budget
//! reports "no headroom" until it falls back below the low-water mark, so load balancers shift
//! traffic before clients are refused.
//!
//! Below the high-water mark sits the flush mark ([`FLUSH_MARK`]): above it the batchers stop
//! waiting out `--batch-timeout` and send their open batches at once, oldest first, so bytes
//! wait upstream (where they leave) rather than in batches (where they only age), and a client
//! is refused only when the upstream truly cannot keep up. A refusal is counted by the part
//! that asked ([`telemetry::BUFFER_REFUSALS`]).
//!
//! Never allocates on behalf of a charge: it only counts, so callers reserve first and allocate
//! second.
//!
//! Admission may wait, briefly ([`ADMISSION_WAIT`]), for room the pipeline is about to give
//! back: when the bytes held downstream of ingest (ring, batches, upstream) would cover a
//! reservation once delivered, and the pipeline has given bytes back within the last
//! [`ADMISSION_WAIT`] (the upstream is answering), a request waits for them instead of being
//! refused, so a momentary peak (a round of upstream requests in flight) slows clients down
//! rather than failing them. Room held by other bodies still being read, or by a pipeline that
//! is not draining (the upstream hangs or is down), is not waited for: that refusal comes at
//! once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::telemetry;

/// Memory held per request besides its body while it is read and parsed (request head, h2
/// stream state, buffers, bookkeeping), charged in flight with every body so a flood of tiny
/// requests is paid for too.
pub const REQUEST_OVERHEAD: usize = 4 << 10;

/// Memory held per admitted report besides the buffer its spans pin (the report and batch
/// entries, its slices' handles, allocator rounding), charged with it from admission until
/// its spans are delivered or dropped. Measured: a million 2-byte reports over gRPC and
/// HTTP/1 with the upstream hanging stay within the budget (`tests/memory_budget.rs`).
pub const REPORT_OVERHEAD: usize = 512;

/// How long a request may wait for room the pipeline is giving back before it is refused.
pub const ADMISSION_WAIT: Duration = Duration::from_millis(500);

/// Fraction of the budget above which open batches are flushed at once (below the low-water
/// mark, so batches leave before readiness drops).
pub const FLUSH_MARK: f64 = 0.5;

/// Where along the path a charge's bytes are held: the closed label set of
/// [`telemetry::BUFFER_PART_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Request bodies being read, decompressed, parsed or translated at ingest.
    InFlight,
    /// Admitted reports held in the ring.
    Ring,
    /// Spans waiting in open batches.
    Batches,
    /// Requests sent or being retried upstream.
    Upstream,
}

impl Part {
    /// Every part, in path order.
    pub const ALL: [Part; 4] = [Part::InFlight, Part::Ring, Part::Batches, Part::Upstream];

    /// The metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::InFlight => "in_flight",
            Part::Ring => "ring",
            Part::Batches => "batches",
            Part::Upstream => "upstream",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The budget could not cover a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("buffer full: {needed} bytes requested, {free} of {capacity} free")]
pub struct BudgetFull {
    /// Bytes requested.
    pub needed: usize,
    /// Bytes free when it was refused.
    pub free: usize,
    /// The whole budget.
    pub capacity: usize,
}

#[derive(Debug)]
struct Shared {
    capacity: usize,
    high: usize,
    low: usize,
    flush: usize,
    used: AtomicUsize,
    by_part: [AtomicUsize; 4],
    spans: AtomicU64,
    above_high: AtomicBool,
    gauge: metrics::Gauge,
    part_gauges: [metrics::Gauge; 4],
    refusals: [metrics::Counter; 4],
    pressure: Notify,
    /// Requests waiting for room, and how they hear of it.
    waiting: AtomicUsize,
    released: Notify,
    /// When the pipeline (not ingest) last gave bytes back, in milliseconds since `started`.
    drained_at_ms: AtomicU64,
    started: std::time::Instant,
}

impl Shared {
    fn take(&self, part: Part, bytes: usize) -> Result<(), BudgetFull> {
        self.try_take(part, bytes).inspect_err(|_| {
            self.refusals[part.index()].increment(1);
        })
    }

    /// Takes `bytes` if they fit, without counting a refusal.
    fn try_take(&self, part: Part, bytes: usize) -> Result<(), BudgetFull> {
        let result = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= self.capacity)
            });
        match result {
            Ok(before) => {
                let now = before + bytes;
                if before <= self.flush && now > self.flush {
                    self.pressure.notify_waiters();
                }
                if now > self.high {
                    self.above_high.store(true, Ordering::Release);
                }
                self.gauge.set(now as f64);
                self.add_part(part, bytes);
                Ok(())
            }
            Err(used) => Err(BudgetFull {
                needed: bytes,
                free: self.capacity.saturating_sub(used),
                capacity: self.capacity,
            }),
        }
    }

    fn give(&self, part: Part, bytes: usize) {
        let now = self.used.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if now < self.low {
            self.above_high.store(false, Ordering::Release);
        }
        self.gauge.set(now as f64);
        self.sub_part(part, bytes);
        if part != Part::InFlight {
            self.drained_at_ms
                .store(self.started.elapsed().as_millis() as u64, Ordering::Release);
        }
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.released.notify_waiters();
        }
    }

    /// Whether `needed` more bytes would fit once what the pipeline holds downstream of ingest
    /// (ring, batches, upstream) is given back.
    fn drain_would_cover(&self, needed: usize) -> bool {
        let in_flight = self.by_part[Part::InFlight.index()].load(Ordering::Acquire);
        let since_drained = (self.started.elapsed().as_millis() as u64)
            .saturating_sub(self.drained_at_ms.load(Ordering::Acquire));
        in_flight.saturating_add(needed) <= self.capacity
            && since_drained <= ADMISSION_WAIT.as_millis() as u64
    }

    /// Takes `bytes`, waiting up to [`ADMISSION_WAIT`] while the pipeline's own holdings would
    /// make room.
    async fn take_waiting(&self, part: Part, bytes: usize) -> Result<(), BudgetFull> {
        // The common case: room now, no waiter registered.
        if self.try_take(part, bytes).is_ok() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + ADMISSION_WAIT;
        loop {
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            self.waiting.fetch_add(1, Ordering::AcqRel);
            let full = match self.try_take(part, bytes) {
                Ok(()) => {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Ok(());
                }
                Err(full) => full,
            };
            let waited = if self.drain_would_cover(bytes) {
                tokio::time::timeout_at(deadline, released).await.is_ok()
            } else {
                false
            };
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            if !waited {
                self.refusals[part.index()].increment(1);
                return Err(full);
            }
        }
    }

    fn add_part(&self, part: Part, bytes: usize) {
        let i = part.index();
        let now = self.by_part[i].fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.part_gauges[i].set(now as f64);
    }

    fn sub_part(&self, part: Part, bytes: usize) {
        let i = part.index();
        let now = self.by_part[i].fetch_sub(bytes, Ordering::AcqRel) - bytes;
        self.part_gauges[i].set(now as f64);
    }
}

/// The byte budget; cheap to clone, shared by ingest, the ring, the batchers and the exporter.
#[derive(Debug, Clone)]
pub struct Budget {
    shared: Arc<Shared>,
}

impl Budget {
    /// A budget of `capacity` bytes, without headroom above `high_water` (a fraction of it)
    /// until use falls below `low_water`.
    pub fn new(capacity: usize, high_water: f64, low_water: f64) -> Budget {
        metrics::gauge!(telemetry::BUFFER_CAPACITY_BYTES).set(capacity as f64);
        let part_gauges = Part::ALL
            .map(|part| metrics::gauge!(telemetry::BUFFER_PART_BYTES, "part" => part.as_str()));
        let refusals = Part::ALL
            .map(|part| metrics::counter!(telemetry::BUFFER_REFUSALS, "part" => part.as_str()));
        Budget {
            shared: Arc::new(Shared {
                capacity,
                high: (capacity as f64 * high_water) as usize,
                low: (capacity as f64 * low_water) as usize,
                flush: (capacity as f64 * FLUSH_MARK) as usize,
                used: AtomicUsize::new(0),
                by_part: Default::default(),
                spans: AtomicU64::new(0),
                above_high: AtomicBool::new(false),
                gauge: metrics::gauge!(telemetry::BUFFER_BYTES),
                part_gauges,
                refusals,
                pressure: Notify::new(),
                waiting: AtomicUsize::new(0),
                released: Notify::new(),
                drained_at_ms: AtomicU64::new(0),
                started: std::time::Instant::now(),
            }),
        }
    }

    /// Reserves `bytes` for `part`, holding `spans` spans; refused when the budget cannot
    /// cover it.
    pub fn reserve(&self, part: Part, bytes: usize, spans: u64) -> Result<Charge, BudgetFull> {
        self.shared.take(part, bytes)?;
        Ok(self.taken(part, bytes, spans))
    }

    /// Reserves like [`Budget::reserve`], but waits up to [`ADMISSION_WAIT`] for room the
    /// pipeline is giving back (never for room other requests hold).
    pub async fn reserve_waiting(
        &self,
        part: Part,
        bytes: usize,
        spans: u64,
    ) -> Result<Charge, BudgetFull> {
        self.shared.take_waiting(part, bytes).await?;
        Ok(self.taken(part, bytes, spans))
    }

    /// The charge for `bytes` already taken for `part`, holding `spans` spans.
    fn taken(&self, part: Part, bytes: usize, spans: u64) -> Charge {
        self.shared.spans.fetch_add(spans, Ordering::AcqRel);
        Charge {
            budget: self.shared.clone(),
            part,
            bytes,
            spans,
        }
    }

    /// Bytes in use now, all parts together.
    pub fn used_bytes(&self) -> usize {
        self.shared.used.load(Ordering::Acquire)
    }

    /// Bytes `part` holds now.
    pub fn part_bytes(&self, part: Part) -> usize {
        self.shared.by_part[part.index()].load(Ordering::Acquire)
    }

    /// Spans held now, from ingest until delivered or dropped.
    pub fn held_spans(&self) -> u64 {
        self.shared.spans.load(Ordering::Acquire)
    }

    /// The whole budget in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.shared.capacity
    }

    /// True while more than [`FLUSH_MARK`] of the budget is in use: open batches should leave
    /// now rather than at their timeout.
    pub fn under_pressure(&self) -> bool {
        self.used_bytes() > self.shared.flush
    }

    /// Resolves the next time use crosses the flush mark upwards (only for waiters already
    /// polling: check [`Budget::under_pressure`] too).
    pub async fn pressure_rises(&self) {
        self.shared.pressure.notified().await
    }

    /// False from crossing the high-water mark until falling back below the low-water mark.
    pub fn has_headroom(&self) -> bool {
        !self.shared.above_high.load(Ordering::Acquire)
    }
}

/// A share of the budget held by one part of the path. Dropping it gives the bytes back.
#[derive(Debug)]
pub struct Charge {
    budget: Arc<Shared>,
    part: Part,
    bytes: usize,
    spans: u64,
}

impl Charge {
    /// Takes over `other`'s share (moving it to this charge's part), so a batch holds one
    /// charge however many reports it has.
    pub fn absorb(&mut self, mut other: Charge) {
        let bytes = std::mem::take(&mut other.bytes);
        if other.part != self.part {
            self.budget.sub_part(other.part, bytes);
            self.budget.add_part(self.part, bytes);
        }
        self.bytes += bytes;
        self.spans += std::mem::take(&mut other.spans);
    }

    /// Grows the share by `bytes` (a body that turned out larger, a buffer that must grow);
    /// refused, and unchanged, when the budget cannot cover it.
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), BudgetFull> {
        self.budget.take(self.part, bytes)?;
        self.bytes += bytes;
        Ok(())
    }

    /// Grows like [`Charge::try_grow`], but waits up to [`ADMISSION_WAIT`] for room the
    /// pipeline is giving back (never for room other requests hold).
    pub async fn grow_waiting(&mut self, bytes: usize) -> Result<(), BudgetFull> {
        self.budget.take_waiting(self.part, bytes).await?;
        self.bytes += bytes;
        Ok(())
    }

    /// Gives `bytes` of the share back now (at most what it holds).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        if bytes > 0 {
            self.budget.give(self.part, bytes);
            self.bytes -= bytes;
        }
    }

    /// Moves the share to `part` (its bytes moved along the path).
    pub fn move_to(&mut self, part: Part) {
        if part != self.part {
            self.budget.sub_part(self.part, self.bytes);
            self.budget.add_part(part, self.bytes);
            self.part = part;
        }
    }

    /// Grows or shrinks the share to exactly `bytes`; refused, and unchanged, when growing
    /// cannot be covered.
    pub fn resize(&mut self, bytes: usize) -> Result<(), BudgetFull> {
        if bytes > self.bytes {
            self.try_grow(bytes - self.bytes)
        } else {
            self.shrink(self.bytes - bytes);
            Ok(())
        }
    }

    /// Adds `spans` to the spans the share holds (known only once the body is scanned).
    pub fn hold_spans(&mut self, spans: u64) {
        self.budget.spans.fetch_add(spans, Ordering::AcqRel);
        self.spans += spans;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Spans held.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// The part holding it.
    pub fn part(&self) -> Part {
        self.part
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give(self.part, self.bytes);
        }
        if self.spans > 0 {
            self.budget.spans.fetch_sub(self.spans, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned_on_drop() {
        let budget = Budget::new(100, 0.8, 0.5);
        let a = budget.reserve(Part::Ring, 60, 3).unwrap();
        assert_eq!(
            budget.reserve(Part::InFlight, 50, 1).unwrap_err(),
            BudgetFull {
                needed: 50,
                free: 40,
                capacity: 100
            }
        );
        assert_eq!((budget.used_bytes(), budget.held_spans()), (60, 3));
        drop(a);
        assert_eq!((budget.used_bytes(), budget.held_spans()), (0, 0));
        assert!(budget.reserve(Part::Ring, 100, 1).is_ok());
    }

    #[test]
    fn absorbed_charges_release_once_and_move_parts() {
        let budget = Budget::new(100, 0.8, 0.5);
        let mut a = budget.reserve(Part::Batches, 10, 1).unwrap();
        a.absorb(budget.reserve(Part::Ring, 20, 2).unwrap());
        assert_eq!((budget.used_bytes(), budget.held_spans()), (30, 3));
        assert_eq!(
            (
                budget.part_bytes(Part::Batches),
                budget.part_bytes(Part::Ring)
            ),
            (30, 0)
        );
        a.move_to(Part::Upstream);
        assert_eq!(budget.part_bytes(Part::Upstream), 30);
        drop(a);
        assert_eq!((budget.used_bytes(), budget.held_spans()), (0, 0));
        assert!(Part::ALL.iter().all(|p| budget.part_bytes(*p) == 0));
    }

    #[test]
    fn grow_and_shrink_stay_within_the_budget() {
        let budget = Budget::new(100, 0.8, 0.5);
        let mut body = budget.reserve(Part::InFlight, 10, 0).unwrap();
        body.try_grow(80).unwrap();
        assert!(body.try_grow(11).is_err());
        assert_eq!(body.bytes(), 90);
        body.shrink(50);
        body.hold_spans(4);
        assert_eq!((budget.used_bytes(), budget.held_spans()), (40, 4));
        body.shrink(1000);
        assert_eq!(body.bytes(), 0);
        drop(body);
        assert_eq!((budget.used_bytes(), budget.held_spans()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn admission_waits_for_room_the_pipeline_gives_back_but_not_for_bodies() {
        let budget = Budget::new(100, 0.8, 0.5);
        let upstream = budget.reserve(Part::Upstream, 90, 1).unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve_waiting(Part::InFlight, 50, 0).await })
        };
        tokio::time::sleep(ADMISSION_WAIT / 2).await;
        drop(upstream); // delivered: the waiting request gets its room
        assert_eq!(waiter.await.unwrap().unwrap().bytes(), 50);
        // Room held by bodies being read is not waited for: refused at once.
        let body = budget.reserve(Part::InFlight, 90, 0).unwrap();
        let started = tokio::time::Instant::now();
        assert!(budget.reserve_waiting(Part::InFlight, 50, 0).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Nor is room the pipeline keeps past the wait.
        drop(body);
        let _stuck = budget.reserve(Part::Batches, 90, 1).unwrap();
        assert!(budget.reserve_waiting(Part::InFlight, 50, 0).await.is_err());
        assert_eq!(started.elapsed(), ADMISSION_WAIT);
    }

    #[test]
    fn headroom_has_hysteresis() {
        let budget = Budget::new(100, 0.8, 0.5);
        let big = budget.reserve(Part::Ring, 85, 1).unwrap();
        assert!(!budget.has_headroom());
        let small = budget.reserve(Part::Ring, 10, 1).unwrap();
        drop(big); // 10 used: below low water (50)
        assert!(budget.has_headroom());
        let mid = budget.reserve(Part::Ring, 60, 1).unwrap(); // 70: between marks
        assert!(budget.has_headroom());
        drop((small, mid));
    }
}
