//! Where a request body is read to: straight into the ring's preallocated region when its
//! length is known up front and the region has room (it stays there until its spans are
//! delivered, so report buffers never come from the allocator), otherwise the heap.
//!
//! Two guards keep the region's head moving: a body still arriving [`REGION_HOLD`] after its
//! room was reserved moves to the heap (a slow client never holds the head), and a body that
//! finds no room waits at most [`REGION_WAIT`], and only while the budget is under pressure
//! (batches are then flushed at once, so room is coming back), before it is read to the heap.
//! Either way the bytes are the same and so is their charge.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::pipeline::arena::Filling;
use crate::pipeline::{Arena, Budget};

/// How long a body waits, under pressure, for room in the region before it is read to the
/// heap (room comes back as the head passes delivered records; waiting longer would add the
/// wait to the client's latency for little saved).
pub const REGION_WAIT: Duration = Duration::from_millis(50);

/// How long a body may take to arrive in the region before it moves to the heap.
pub const REGION_HOLD: Duration = Duration::from_millis(250);

/// A body of a known length being read, into the region or the heap.
pub struct BodyBuffer {
    place: Place,
    len: usize,
    hold_until: Instant,
}

enum Place {
    Region(Filling),
    Heap(BytesMut),
}

impl BodyBuffer {
    /// Room for a body of `len` bytes: in `region` if it has room (waiting briefly under
    /// `budget` pressure), else on the heap.
    pub async fn reserve(len: usize, region: Option<&Arena>, budget: &Budget) -> BodyBuffer {
        let filling = match region {
            Some(region) if budget.under_pressure() => {
                region.reserve_by(len, Instant::now() + REGION_WAIT).await
            }
            Some(region) => region.reserve(len),
            None => None,
        };
        BodyBuffer {
            place: filling.map_or_else(|| Place::Heap(BytesMut::with_capacity(len)), Place::Region),
            len,
            hold_until: Instant::now() + REGION_HOLD,
        }
    }

    /// Room for a body of `len` bytes on the heap (a compressed body, inflated right after).
    pub fn heap(len: usize) -> BodyBuffer {
        BodyBuffer {
            place: Place::Heap(BytesMut::with_capacity(len)),
            len,
            hold_until: Instant::now(),
        }
    }

    /// Bytes read so far.
    pub fn filled(&self) -> usize {
        match &self.place {
            Place::Region(filling) => filling.filled(),
            Place::Heap(heap) => heap.len(),
        }
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> usize {
        self.len - self.filled()
    }

    /// Appends what fits of `src` (at most the remaining length).
    pub fn put(&mut self, src: &[u8]) {
        let src = &src[..src.len().min(self.remaining())];
        match &mut self.place {
            Place::Region(filling) => {
                filling.put(src);
            }
            Place::Heap(heap) => heap.extend_from_slice(src),
        }
    }

    /// Awaits `next` (the body's next frame); a body held in the region past [`REGION_HOLD`]
    /// moves to the heap first, so its room is given back while the client is slow.
    pub async fn next<F: Future>(&mut self, next: F) -> F::Output {
        let Place::Region(_) = self.place else {
            return next.await;
        };
        let mut next = std::pin::pin!(next);
        match tokio::time::timeout_at(self.hold_until, next.as_mut()).await {
            Ok(output) => output,
            Err(_) => {
                self.move_to_heap();
                next.await
            }
        }
    }

    /// Copies what arrived to a heap buffer of the whole length and gives the room back.
    fn move_to_heap(&mut self) {
        if let Place::Region(filling) = &self.place {
            let mut heap = BytesMut::with_capacity(self.len);
            heap.extend_from_slice(filling.written());
            self.place = Place::Heap(heap);
        }
    }

    /// The body read so far.
    pub fn freeze(self) -> Bytes {
        match self.place {
            Place::Region(filling) => filling.freeze(),
            Place::Heap(heap) => heap.freeze(),
        }
    }
}
