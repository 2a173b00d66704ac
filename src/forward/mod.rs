//! Forwarding: sends batches to the upstream collector and keeps its reachability current.
//!
//! Owns the one upstream connection pool, retries, and the upstream's half of readiness. It
//! never looks inside a batch: bytes go out as the batcher wrote them.

pub mod client;
pub mod error;
pub mod send;

pub use client::{CaRoots, LastError, Upstream, UpstreamHealth, UpstreamSettings};
pub use error::{ErrorSource, ForwardError};

use crate::pipeline::{Batch, BatchSink};

/// Where batches go: the upstream, or nowhere when forwarding is off.
#[derive(Clone)]
pub enum Exporter {
    /// Forward to the upstream.
    Upstream(Upstream),
    /// Forwarding is off (developer mode without `--upstream`): batches end here. Not a drop:
    /// the spans were kept by the developer-mode store, which is all that mode promises.
    Off,
}

impl BatchSink for Exporter {
    async fn submit(&self, batch: Batch) {
        match self {
            Exporter::Upstream(upstream) => upstream.submit(batch).await,
            // Dropping the batch gives its bytes back to the buffer.
            Exporter::Off => drop(batch),
        }
    }
}
