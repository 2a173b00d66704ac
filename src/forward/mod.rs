//! Forwarding: sends batches to the upstream collector and keeps its reachability current.
//!
//! Owns the one upstream connection pool, retries, and the upstream's half of readiness. It
//! never looks inside a batch: bytes go out as the batcher wrote them.

pub mod client;
pub mod error;

pub use client::{Upstream, UpstreamHealth, UpstreamSettings};
pub use error::{ErrorSource, ForwardError};

use crate::pipeline::{Batch, BatchSink};
use crate::telemetry::{self, DropReason};

/// Where batches go: the upstream, or nowhere when forwarding is off.
#[derive(Clone)]
pub enum Exporter {
    /// Forward to the upstream.
    Upstream(Upstream),
    /// Forwarding is off (developer mode without `--upstream`): batches end here, counted.
    Off,
}

impl BatchSink for Exporter {
    async fn submit(&self, batch: Batch) {
        match self {
            Exporter::Upstream(upstream) => upstream.submit(batch).await,
            Exporter::Off => {
                telemetry::count_dropped(DropReason::NoUpstream, u64::from(batch.spans));
            }
        }
    }
}
