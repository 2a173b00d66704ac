//! The ring's memory: one preallocated region of `--buffer-bytes` into which each admitted
//! report's span runs are written once, and from which batches take `Bytes` slices.
//!
//! Why a copy: a zero-copy slice pins the whole receive buffer it was cut from (a 2-byte
//! report held ~4 KB), and allocator overhead and fragmentation escape any byte count. Copying
//! the runs (only the spans, not the envelope) once into the region frees the receive buffer at
//! once and makes the bound structural: the region is allocated once (lazily touched, so RSS
//! grows only as far as it is used) and never grows. After the copy nothing is copied again:
//! batches are slices of records ([`bytes::Bytes::from_owner`] over a [`Record`]), written to
//! the upstream as they are.
//!
//! A record is either written from parts ([`Arena::write`]: span runs cut from a request
//! buffer) or filled in place ([`Arena::reserve`]: a gRPC request message read from the socket
//! straight into the region, so it is never on the heap at all).
//!
//! Records are allocated at the tail in order and complete out of order (per-reporter batches,
//! retries); a record is complete when the last slice of it is dropped, and the head advances
//! over completed records. When the region has no contiguous room (the head is held by a long
//! retry, or the region is fragmented) the caller keeps the report as slices of its request
//! buffer, charged to the same budget as before: a held record never blocks ingest.
//!
//! Resident memory: pages are touched as the tail first passes them, and the tail goes back to
//! offset 0 as soon as the head has left room there for twice the live bytes (and whenever the
//! ring empties), so the records stay in the low end of the region and about three times the
//! bytes the load keeps in flight are touched, not the whole region; a load that fills the budget touches all of it
//! and RSS settles at `--buffer-bytes` (plus the process's fixed constant), which is the bound
//! by construction. An idle region gives its pages back ([`Arena::release_if_idle`]), so RSS
//! falls again after a burst.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The preallocated region and its allocation state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Arena {
    inner: Arc<Inner>,
}

struct Inner {
    memory: Box<[UnsafeCell<u8>]>,
    state: Mutex<State>,
    /// Reservations waiting for the head to move, and how they hear of it.
    waiting: AtomicUsize,
    room: Notify,
}

impl Inner {
    /// Marks record `seq` complete and wakes waiting reservations if the head moved.
    fn complete(&self, seq: u64) {
        let moved = lock(&self.state).complete(seq);
        if moved && self.waiting.load(Ordering::Acquire) > 0 {
            self.room.notify_waiters();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena")
            .field("bytes", &self.memory.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the bytes of a record are written only by the one `Arena::write` call that allocated
// it, before any `Record` for it exists; afterwards they are only read. A region is handed out
// again only after its record was dropped (under the state lock, which orders the last read
// before the next write).
unsafe impl Sync for Inner {}

#[derive(Debug, Default)]
struct State {
    /// Records in allocation order, completed or not, from the head to the tail.
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    first_seq: u64,
    /// Whether a record was reserved since the pages were last given back.
    touched: bool,
    /// Whether a record was reserved since the last [`Arena::release_if_idle`] (or was live
    /// at it).
    active: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    end: usize,
    done: bool,
}

impl State {
    /// Where `len` contiguous bytes fit now, if anywhere.
    fn place(&self, len: usize, capacity: usize) -> Option<usize> {
        let (Some(front), Some(back)) = (self.slots.front(), self.slots.back()) else {
            return (len <= capacity).then_some(0);
        };
        let (head, tail) = (front.start, back.end);
        if back.start >= head {
            // Live bytes are [head, tail). Back to 0 once the head has left room there for
            // twice the live bytes (so records stay in the low end of the region and only
            // about three times what the load keeps in flight is ever touched, while the
            // records before the head have two turns of the live bytes to complete before the
            // wrapped tail reaches them); else after the tail; else 0 if it fits there.
            if len <= head && head >= 2 * (tail - head) {
                Some(0)
            } else if tail + len <= capacity {
                Some(tail)
            } else {
                (len <= head).then_some(0)
            }
        } else {
            // Wrapped: live bytes are [head, ..) and [0, tail).
            (tail + len <= head).then_some(tail)
        }
    }

    /// Marks record `seq` complete; true when the head moved past it (room was freed).
    fn complete(&mut self, seq: u64) -> bool {
        let Some(slot) = usize::try_from(seq - self.first_seq)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            return false;
        };
        slot.done = true;
        let before = self.first_seq;
        while self.slots.front().is_some_and(|s| s.done) {
            self.slots.pop_front();
            self.first_seq += 1;
        }
        self.first_seq != before
    }
}

/// One report's bytes in the region; the region is reusable once every slice of it is gone.
pub struct Record {
    arena: Arc<Inner>,
    seq: u64,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Record {
    fn as_ref(&self) -> &[u8] {
        let cells = &self.arena.memory[self.start..self.start + self.len];
        // SAFETY: `UnsafeCell<u8>` has the layout of `u8`; the record's bytes were written
        // before the record was made and are not written again while it lives.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<u8>(), cells.len()) }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        self.arena.complete(self.seq);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is consistent after every statement; a panic elsewhere cannot tear it.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The region could not be reserved: the machine will not map that much memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot reserve the ring's {bytes}-byte region (--buffer-bytes): the machine will not map that much memory; set --buffer-bytes lower"
)]
pub struct RegionError {
    /// The size asked for.
    pub bytes: usize,
}

impl Arena {
    /// A region of `capacity` bytes (reserved now, touched only as it is used).
    pub fn new(capacity: usize) -> Result<Arena, RegionError> {
        let memory: Box<[UnsafeCell<u8>]> = if capacity == 0 {
            Box::new([])
        } else {
            let layout = std::alloc::Layout::array::<u8>(capacity)
                .map_err(|_| RegionError { bytes: capacity })?;
            // Zeroed pages, which the kernel maps lazily; null (not an abort) when the
            // allocator cannot reserve them.
            // SAFETY: the layout has a non-zero size.
            let at = unsafe { std::alloc::alloc_zeroed(layout) };
            if at.is_null() {
                return Err(RegionError { bytes: capacity });
            }
            // SAFETY: `at` is a zeroed allocation of `capacity` bytes with the layout of
            // `[u8]`, which `[UnsafeCell<u8>]` shares (`repr(transparent)`), so the box frees
            // it with the same layout.
            unsafe {
                Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                    at.cast::<UnsafeCell<u8>>(),
                    capacity,
                ))
            }
        };
        Ok(Arena {
            inner: Arc::new(Inner {
                memory,
                state: Mutex::new(State::default()),
                waiting: AtomicUsize::new(0),
                room: Notify::new(),
            }),
        })
    }

    /// Size of the region.
    pub fn capacity(&self) -> usize {
        self.inner.memory.len()
    }

    /// Bytes between the head and the tail (completed records not yet passed included).
    pub fn used(&self) -> usize {
        let state = lock(&self.inner.state);
        match (state.slots.front(), state.slots.back()) {
            (Some(front), Some(back)) if back.start >= front.start => back.end - front.start,
            (Some(front), Some(back)) => self.capacity() - front.start + back.end,
            _ => 0,
        }
    }

    /// Room for a record of `len` bytes at the tail, to be filled in place (a request message
    /// read from the socket straight into the region); `None` when there is no contiguous room.
    pub fn reserve(&self, len: usize) -> Option<Filling> {
        if len == 0 {
            return None;
        }
        let (seq, start) = {
            let mut state = lock(&self.inner.state);
            let start = state.place(len, self.capacity())?;
            state.touched = true;
            state.active = true;
            state.slots.push_back(Slot {
                start,
                end: start + len,
                done: false,
            });
            (state.first_seq + state.slots.len() as u64 - 1, start)
        };
        Some(Filling {
            arena: self.inner.clone(),
            seq,
            start,
            len,
            filled: 0,
            frozen: false,
        })
    }

    /// Like [`Arena::reserve`], but waits until `deadline` for the head to move when there is
    /// no room now (records are completing: their batches are on their way upstream).
    pub async fn reserve_by(&self, len: usize, deadline: tokio::time::Instant) -> Option<Filling> {
        if let Some(filling) = self.reserve(len) {
            return Some(filling);
        }
        if len > self.capacity() {
            return None;
        }
        /// Counts a waiter for as long as it waits (also when its future is dropped).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.inner.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.inner.waiting);
        loop {
            let moved = self.inner.room.notified();
            let mut moved = std::pin::pin!(moved);
            moved.as_mut().enable();
            if let Some(filling) = self.reserve(len) {
                return Some(filling);
            }
            tokio::time::timeout_at(deadline, moved).await.ok()?;
        }
    }

    /// Writes `parts` one after another into one new record and returns it as one `Bytes`
    /// plus the offset of each part in it; `None` when the region has no contiguous room.
    pub fn write(&self, parts: &[Bytes]) -> Option<(Bytes, Vec<usize>)> {
        let mut filling = self.reserve(parts.iter().map(Bytes::len).sum())?;
        let offsets = parts
            .iter()
            .map(|part| {
                let at = filling.filled();
                filling.put(part);
                at
            })
            .collect();
        Some((filling.freeze(), offsets))
    }

    /// Gives the region's pages back to the kernel when it holds no record and none was
    /// reserved or live since the previous call (the satellite has been idle for that long), so RSS
    /// falls back after a burst; true if it did. Called periodically (`lib.rs`).
    pub fn release_if_idle(&self) -> bool {
        let mut state = lock(&self.inner.state);
        let idle = state.slots.is_empty() && !state.active;
        // A record live now counts as activity in the coming period too.
        state.active = !state.slots.is_empty();
        if !idle || !state.touched {
            return false;
        }
        // Whole pages inside the region only (the allocation need not start on a page).
        let page = 4096;
        let region = self.inner.memory.as_ptr_range();
        let start = (region.start as usize).next_multiple_of(page);
        let end = region.end as usize / page * page;
        if end > start {
            // SAFETY: no record or filling exists (no slot, and the lock keeps a reservation
            // from starting), so nothing reads or writes the range; `MADV_DONTNEED` leaves it
            // mapped, reading zeros when next touched, and it lies within the allocation.
            let done = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if done != 0 {
                return false;
            }
        }
        state.touched = false;
        true
    }

    /// Calls [`Arena::release_if_idle`] every `every` until `stop`.
    pub async fn give_back_when_idle(self, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {
                    if self.release_if_idle() {
                        tracing::debug!("ring region idle: its pages were given back");
                    }
                }
            }
        }
    }

    /// Whether `bytes` lie in the region (they are a slice of one of its records).
    pub fn holds(&self, bytes: &[u8]) -> bool {
        let region = self.inner.memory.as_ptr_range();
        let at = bytes.as_ptr().cast::<UnsafeCell<u8>>();
        !bytes.is_empty() && region.start <= at && at < region.end
    }
}

/// A record being written: bytes are appended in order, then [`Filling::freeze`] makes them
/// a record. Dropped unfrozen, its room is given back (a request that failed mid-read).
pub struct Filling {
    arena: Arc<Inner>,
    seq: u64,
    start: usize,
    len: usize,
    filled: usize,
    frozen: bool,
}

impl Filling {
    /// Bytes written so far.
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Bytes that still fit.
    pub fn remaining(&self) -> usize {
        self.len - self.filled
    }

    /// Appends as much of `src` as fits and returns how much that was.
    pub fn put(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.remaining());
        let cells = &self.arena.memory[self.start + self.filled..][..n];
        // SAFETY: the room [start, start + len) was allocated to this filling alone (see
        // `Inner`'s Sync) and no record reads it until `freeze`.
        let dst = unsafe { std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), n) };
        dst.copy_from_slice(&src[..n]);
        self.filled += n;
        n
    }

    /// The bytes written so far.
    pub fn written(&self) -> &[u8] {
        let cells = &self.arena.memory[self.start..][..self.filled];
        // SAFETY: written by this filling, which alone may write them, and `&self` excludes
        // `put` while the slice lives.
        unsafe { std::slice::from_raw_parts(cells.as_ptr().cast::<u8>(), cells.len()) }
    }

    /// The bytes written so far as one record, sliceable into `Bytes` that keep it.
    pub fn freeze(mut self) -> Bytes {
        if self.filled == 0 {
            return Bytes::new();
        }
        self.frozen = true;
        Bytes::from_owner(Record {
            arena: self.arena.clone(),
            seq: self.seq,
            start: self.start,
            len: self.filled,
        })
    }
}

impl Drop for Filling {
    fn drop(&mut self) {
        if !self.frozen {
            self.arena.complete(self.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn writes_once_and_slices_read_back() {
        let arena = Arena::new(64).unwrap();
        let (record, offsets) = arena.write(&[b(b"abc"), b(b"defg")]).unwrap();
        assert_eq!(&record[..], b"abcdefg");
        assert_eq!(offsets, vec![0, 3]);
        let tail = record.slice(3..);
        drop(record);
        assert_eq!(arena.used(), 7, "a slice keeps the record");
        assert_eq!(&tail[..], b"defg");
        drop(tail);
        assert_eq!(arena.used(), 0);
    }

    #[test]
    fn completes_out_of_order_and_wraps_around() {
        let arena = Arena::new(10).unwrap();
        let (a, _) = arena.write(&[b(b"aaaa")]).unwrap();
        let (c, _) = arena.write(&[b(b"cccc")]).unwrap();
        assert!(arena.write(&[b(b"ddd")]).is_none(), "no contiguous room");
        drop(c);
        assert_eq!(arena.used(), 8, "the head is still held");
        drop(a);
        assert_eq!(arena.used(), 0, "head passed both completed records");
        let (x, _) = arena.write(&[b(b"xxxxxx")]).unwrap();
        let (y, _) = arena.write(&[b(b"yyyy")]).unwrap();
        drop(x);
        let (z, _) = arena.write(&[b(b"zzzzz")]).unwrap();
        assert_eq!(&z[..], b"zzzzz", "wrapped to the start");
        assert!(arena.write(&[b(b"w")]).is_some_and(|(w, _)| &w[..] == b"w"));
        assert_eq!((&y[..], &z[..]), (&b"yyyy"[..], &b"zzzzz"[..]));
        assert!(arena.write(&[b(b"too long for it")]).is_none());
    }

    #[test]
    fn a_record_is_filled_in_place_and_an_abandoned_filling_gives_its_room_back() {
        let arena = Arena::new(16).unwrap();
        let mut filling = arena.reserve(8).unwrap();
        assert_eq!((filling.put(b"abc"), filling.put(b"defghijk")), (3, 5));
        assert_eq!(filling.written(), b"abcdefgh");
        let record = filling.freeze();
        assert!(arena.holds(&record[2..4]) && !arena.holds(b"elsewhere"));
        let abandoned = arena.reserve(8).unwrap();
        assert!(arena.reserve(1).is_none(), "full");
        drop(abandoned);
        drop(record);
        assert_eq!(arena.used(), 0);
        let mut partial = arena.reserve(16).unwrap();
        partial.put(b"xy");
        assert_eq!(
            &partial.freeze()[..],
            b"xy",
            "a short fill freezes what it has"
        );
        assert!(arena.reserve(0).is_none());
    }

    #[test]
    fn records_stay_in_the_low_end_when_the_head_leaves_room_there() {
        let arena = Arena::new(100).unwrap();
        let start = |record: &Bytes| record.as_ptr() as usize;
        let ten = || arena.write(&[b(b"0123456789")]).unwrap().0;
        let (a, a2, a3, a4, b1) = (ten(), ten(), ten(), ten(), ten());
        let base = start(&a);
        drop(a);
        let c = ten();
        assert_eq!(
            start(&c) - base,
            50,
            "room at 0 for 10 bytes, 40 live: on after the tail"
        );
        drop((a2, a3, a4));
        let d = ten();
        assert_eq!(
            start(&d),
            base,
            "room at 0 for 40 bytes, 20 live: back to 0"
        );
        drop((b1, c));
        let e = ten();
        assert_eq!(start(&e) - base, 10, "after d, the only live record");
        assert_eq!(arena.used(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_waits_for_the_head_to_move_until_its_deadline() {
        let arena = Arena::new(8).unwrap();
        let (held, _) = arena.write(&[b(b"held!!")]).unwrap();
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        assert!(
            arena.reserve_by(4, soon).await.is_none(),
            "nobody moved the head"
        );
        let later = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let waiter = tokio::spawn({
            let arena = arena.clone();
            async move { arena.reserve_by(4, later).await.map(|f| f.remaining()) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Some(4), "room came back in time");
        assert_eq!(arena.inner.waiting.load(Ordering::Acquire), 0);
    }

    fn rss_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn an_idle_region_gives_its_pages_back_and_is_usable_after() {
        let arena = Arena::new(64 << 20).unwrap();
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        let (record, _) = arena.write(&vec![chunk; 64]).unwrap();
        assert!(!arena.release_if_idle(), "a record is live");
        drop(record);
        assert!(
            !arena.release_if_idle(),
            "a record was reserved since the last call"
        );
        let before = rss_kib();
        assert!(arena.release_if_idle(), "idle for a whole period");
        let after = rss_kib();
        // Other tests run in this process too: only a large drop is this region's.
        assert!(
            before.saturating_sub(after) > 32 << 10,
            "RSS {before} KiB -> {after} KiB"
        );
        assert!(!arena.release_if_idle(), "nothing touched since");
        let (again, _) = arena.write(&[Bytes::from_static(b"after")]).unwrap();
        assert_eq!(&again[..], b"after");
    }

    #[test]
    fn a_region_the_machine_cannot_map_is_an_error_not_an_abort() {
        let error = Arena::new(usize::MAX / 2).unwrap_err();
        assert!(error.to_string().contains("--buffer-bytes"), "{error}");
        assert_eq!(Arena::new(0).unwrap().capacity(), 0);
    }

    #[test]
    fn records_survive_threads_and_the_arena_handle() {
        let arena = Arena::new(1 << 16).unwrap();
        let records: Vec<Bytes> = (0..100u8)
            .map(|i| arena.write(&[Bytes::from(vec![i; 100])]).unwrap().0)
            .collect();
        drop(arena);
        let handles: Vec<_> = records
            .into_iter()
            .enumerate()
            .map(|(i, r)| std::thread::spawn(move || r.iter().all(|&x| usize::from(x) == i)))
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    }
}
