//! The buffer between ingest and upstream: a byte-budgeted ring of reports, and batchers that
//! group their spans into ready-to-send upstream requests.
//!
//! Knows nothing about HTTP or gRPC and never decodes a span: a [`Report`] arrives as slices
//! of a request buffer and leaves inside a [`Batch`] as the same slices.

pub mod arena;
pub mod batcher;
pub mod budget;
pub mod protocol;
pub mod ring;
pub mod spool;

use bytes::Bytes;

pub use arena::Arena;
pub use batcher::{BatchLimits, BatchSink, Batcher};
pub use budget::{Budget, BudgetFull, Charge, Part, REPORT_OVERHEAD, REQUEST_OVERHEAD};
pub use protocol::{Protocol, TOKEN_HEADER};
pub use ring::{PushError, Ring, RingConfig};
pub use spool::{Spool, SpoolConfig, SpoolFull, Spooled};

use crate::wire::report::SpanRuns;

/// What spans must share to travel in one upstream request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The upstream protocol.
    pub protocol: Protocol,
    /// The access token the batch is sent with (already resolved against the configured one).
    pub token: Bytes,
    /// The encoded `Reporter`: a Lightstep request has exactly one (empty for OTLP, whose
    /// resources travel inside each `ResourceSpans`).
    pub reporter: Bytes,
    /// The reporter's clock offset, sent once per request (0 for OTLP).
    pub timestamp_offset_micros: i64,
}

/// One client report on its way through the buffer.
#[derive(Debug)]
pub struct Report {
    /// Which batch its spans join.
    pub key: BatchKey,
    /// The spans, as slices of the request.
    pub spans: SpanRuns,
    /// Its share of the buffer budget, released when the spans are done with.
    pub charge: Charge,
    /// Its spool record, acknowledged when the spans are done with (empty without a spool).
    pub spooled: Spooled,
}

/// A ready-to-send upstream request: a header and span runs, concatenated on the wire.
#[derive(Debug)]
pub struct Batch {
    /// What every span in it shares.
    pub key: BatchKey,
    /// The encoded leading fields (reporter, auth, offset).
    pub header: Bytes,
    /// Span runs, each a slice of some client's request.
    pub runs: Vec<Bytes>,
    /// Number of spans.
    pub spans: u32,
    /// Budget held until the batch is delivered or dropped.
    pub charge: Charge,
    /// Spool records of its reports, acknowledged when it is delivered or dropped.
    pub spooled: Spooled,
}

impl Batch {
    /// Copies its span runs out of `region` into one buffer of their own (one copy, same
    /// charge), so a batch waiting out a retry backoff does not hold the ring's head.
    pub fn move_out_of(&mut self, region: &Arena) {
        if !self.runs.iter().any(|run| region.holds(run)) {
            return;
        }
        let mut moved = bytes::BytesMut::with_capacity(self.runs.iter().map(Bytes::len).sum());
        let ends: Vec<usize> = self
            .runs
            .iter()
            .map(|run| {
                moved.extend_from_slice(run);
                moved.len()
            })
            .collect();
        let moved = moved.freeze();
        let mut start = 0;
        for (run, end) in self.runs.iter_mut().zip(ends) {
            *run = moved.slice(start..end);
            start = end;
        }
    }

    /// Size of the encoded request.
    pub fn encoded_len(&self) -> usize {
        self.header.len() + self.runs.iter().map(Bytes::len).sum::<usize>()
    }
}
