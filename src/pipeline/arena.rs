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
//! Records are allocated at the tail in order and complete out of order (per-reporter batches,
//! retries); a record is complete when the last slice of it is dropped, and the head advances
//! over completed records. When the region has no contiguous room (the head is held by a long
//! retry, or the region is fragmented) the caller keeps the report as slices of its request
//! buffer, charged to the same budget as before: a held record never blocks ingest.
//!
//! Resident memory: pages are touched as the tail first passes them, and whenever the ring
//! empties the next record starts again at offset 0, so a lightly loaded satellite keeps only
//! the low end of the region resident; under sustained overlapping load the tail cycles through
//! the whole region and RSS settles at `--buffer-bytes` (plus the process's fixed constant),
//! which is the bound by construction.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// The preallocated region and its allocation state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Arena {
    inner: Arc<Inner>,
}

struct Inner {
    memory: Box<[UnsafeCell<u8>]>,
    state: Mutex<State>,
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
            // Live bytes are [head, tail): room after the tail, or from 0 up to the head.
            if tail + len <= capacity {
                Some(tail)
            } else {
                (len <= head).then_some(0)
            }
        } else {
            // Wrapped: live bytes are [head, ..) and [0, tail).
            (tail + len <= head).then_some(tail)
        }
    }

    fn complete(&mut self, seq: u64) {
        let Some(slot) = usize::try_from(seq - self.first_seq)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        else {
            return;
        };
        slot.done = true;
        while self.slots.front().is_some_and(|s| s.done) {
            self.slots.pop_front();
            self.first_seq += 1;
        }
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
        lock(&self.arena.state).complete(self.seq);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The state is consistent after every statement; a panic elsewhere cannot tear it.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Arena {
    /// A region of `capacity` bytes (reserved now, touched only as it is used).
    pub fn new(capacity: usize) -> Arena {
        // `vec![0; n]` asks the allocator for zeroed pages, which the kernel maps lazily.
        let zeroed: Box<[u8]> = vec![0u8; capacity].into_boxed_slice();
        // SAFETY: `UnsafeCell<u8>` is `repr(transparent)` over `u8`.
        let memory = unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [UnsafeCell<u8>]) };
        Arena {
            inner: Arc::new(Inner {
                memory,
                state: Mutex::new(State::default()),
            }),
        }
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

    /// Writes `parts` one after another into one new record and returns it as one `Bytes`
    /// plus the offset of each part in it; `None` when the region has no contiguous room.
    pub fn write(&self, parts: &[Bytes]) -> Option<(Bytes, Vec<usize>)> {
        let len: usize = parts.iter().map(Bytes::len).sum();
        if len == 0 {
            return None;
        }
        let (seq, start) = {
            let mut state = lock(&self.inner.state);
            let start = state.place(len, self.capacity())?;
            state.slots.push_back(Slot {
                start,
                end: start + len,
                done: false,
            });
            (state.first_seq + state.slots.len() as u64 - 1, start)
        };
        let cells = &self.inner.memory[start..start + len];
        // SAFETY: the range was just allocated to this call alone (see `Inner`'s Sync).
        let dst =
            unsafe { std::slice::from_raw_parts_mut(UnsafeCell::raw_get(cells.as_ptr()), len) };
        let mut offsets = Vec::with_capacity(parts.len());
        let mut at = 0;
        for part in parts {
            offsets.push(at);
            dst[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let record = Record {
            arena: self.inner.clone(),
            seq,
            start,
            len,
        };
        Some((Bytes::from_owner(record), offsets))
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
        let arena = Arena::new(64);
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
        let arena = Arena::new(10);
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
    fn records_survive_threads_and_the_arena_handle() {
        let arena = Arena::new(1 << 16);
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
