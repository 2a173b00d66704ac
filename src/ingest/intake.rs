//! The one door into the pipeline, shared by every protocol handler: scan a report, resolve its
//! token, count it, and push its span slices into the ring. Handlers only parse envelopes and
//! map [`IngestError`] to their own statuses.

use bytes::Bytes;
use metrics::Counter;

use super::auth::TokenPolicy;
use crate::pipeline::{BatchKey, Protocol, PushError, Ring};
use crate::telemetry::{self, DropReason};
use crate::wire::WireError;
use crate::wire::report::scan_report;

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a well-formed report.
    #[error("malformed report: {0}")]
    Malformed(#[from] WireError),
    /// The buffer has no room (or is draining): the client should retry later.
    #[error("cannot accept report now: {0}")]
    Unavailable(#[from] PushError),
}

/// What was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Spans taken into the pipeline.
    pub spans: u32,
}

/// Scans reports and feeds the ring. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Intake {
    ring: Ring,
    tokens: TokenPolicy,
    max_run_bytes: usize,
    lightstep: ProtocolCounters,
}

#[derive(Debug)]
struct ProtocolCounters {
    reports: Counter,
    spans: Counter,
    client_dropped: Counter,
    malformed: Counter,
    refused: Counter,
}

impl ProtocolCounters {
    fn new(protocol: Protocol) -> Self {
        let p = protocol.as_str();
        Self {
            reports: metrics::counter!(telemetry::REPORTS_RECEIVED, "protocol" => p),
            spans: metrics::counter!(telemetry::SPANS_RECEIVED, "protocol" => p),
            client_dropped: metrics::counter!(telemetry::CLIENT_DROPPED_SPANS, "protocol" => p),
            malformed: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "malformed"),
            refused: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "unavailable"),
        }
    }
}

impl Intake {
    /// An intake pushing into `ring`; span runs are cut at `max_run_bytes` (the batch limit).
    pub fn new(ring: Ring, tokens: TokenPolicy, max_run_bytes: usize) -> Self {
        Self {
            ring,
            tokens,
            max_run_bytes,
            lightstep: ProtocolCounters::new(Protocol::Lightstep),
        }
    }

    /// The ring it feeds.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Takes one encoded Lightstep `ReportRequest`; `header_token` is the transport's token.
    pub fn lightstep_report(
        &self,
        body: Bytes,
        header_token: Option<&[u8]>,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.lightstep;
        let scan = scan_report(&body, self.max_run_bytes).inspect_err(|error| {
            counters.malformed.increment(1);
            tracing::debug!(%error, "refused malformed report");
        })?;
        counters.reports.increment(1);
        counters.client_dropped.increment(scan.client_dropped_spans);
        let spans = scan.spans.count;
        if spans == 0 {
            return Ok(Accepted { spans });
        }
        let key = BatchKey {
            protocol: Protocol::Lightstep,
            token: self
                .tokens
                .resolve(scan.access_token.as_ref(), header_token),
            reporter: scan.reporter,
            timestamp_offset_micros: scan.timestamp_offset_micros,
        };
        // The span slices keep the whole request buffer alive, so that is what is charged.
        let pushed = self
            .ring
            .reserve(body.len(), u64::from(spans))
            .and_then(|charge| self.ring.push(key, scan.spans, charge));
        if let Err(error) = pushed {
            counters.refused.increment(1);
            let reason = match error {
                PushError::Full { .. } => DropReason::BufferFull,
                PushError::Closed => DropReason::Shutdown,
            };
            telemetry::count_dropped(reason, u64::from(spans));
            return Err(error.into());
        }
        counters.spans.increment(u64::from(spans));
        Ok(Accepted { spans })
    }
}
