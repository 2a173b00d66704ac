//! The one door into the pipeline, shared by every protocol handler: scan a report, resolve its
//! token, count it, and push its span slices into the ring. Handlers only parse envelopes and
//! map [`IngestError`] to their own statuses.

use bytes::Bytes;
use metrics::Counter;

use super::auth::TokenPolicy;
use crate::pipeline::{BatchKey, Protocol, PushError, Ring};
use crate::telemetry::{self, DropReason};
use crate::wire::WireError;
use crate::wire::otlp::{OtlpError, scan_export};
use crate::wire::report::{ReportScan, SpanRuns, scan_report};

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a well-formed Lightstep report.
    #[error("malformed ReportRequest: {0}")]
    Malformed(#[from] WireError),
    /// The body is not a well-formed OTLP export.
    #[error("malformed ExportTraceServiceRequest: {0}")]
    MalformedOtlp(#[from] OtlpError),
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
    otlp: ProtocolCounters,
    /// Developer mode: accepted requests are also offered to the trace store.
    tee: Option<crate::devmode::Tee>,
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
            otlp: ProtocolCounters::new(Protocol::Otlp),
            tee: None,
        }
    }

    /// Also offers every accepted request to developer mode's trace store.
    pub fn with_tee(mut self, tee: crate::devmode::Tee) -> Self {
        self.tee = Some(tee);
        self
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
        let charge = body.len();
        self.lightstep_scanned(scan, header_token, charge)
    }

    /// Takes a Lightstep report already split into its parts (a streamed upload's header
    /// fields and the spans that have arrived so far); `charge_bytes` is the memory it holds.
    pub fn lightstep_scanned(
        &self,
        scan: ReportScan,
        header_token: Option<&[u8]>,
        charge_bytes: usize,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.lightstep;
        counters.reports.increment(1);
        counters.client_dropped.increment(scan.client_dropped_spans);
        if scan.spans.count == 0 {
            return Ok(Accepted { spans: 0 });
        }
        let key = BatchKey {
            protocol: Protocol::Lightstep,
            token: self
                .tokens
                .resolve(scan.access_token.as_ref(), header_token),
            reporter: scan.reporter,
            timestamp_offset_micros: scan.timestamp_offset_micros,
        };
        let teed = self
            .tee
            .as_ref()
            .map(|_| (key.reporter.clone(), scan.spans.runs.clone()));
        let accepted = self.admit(counters, key, scan.spans, charge_bytes)?;
        if let (Some(tee), Some((reporter, runs))) = (&self.tee, teed) {
            tee.lightstep(reporter, scan.timestamp_offset_micros, runs, accepted.spans);
        }
        Ok(accepted)
    }

    /// Counts spans lost because their stream was cut off mid-span.
    pub fn lightstep_truncated(&self, spans: u64) {
        telemetry::count_dropped(DropReason::Truncated, spans);
    }

    /// Takes one encoded OTLP `ExportTraceServiceRequest`; OTLP carries its token only in
    /// the transport's `lightstep-access-token` header.
    pub fn otlp_export(
        &self,
        body: Bytes,
        header_token: Option<&[u8]>,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.otlp;
        let spans = scan_export(&body, self.max_run_bytes).inspect_err(|error| {
            counters.malformed.increment(1);
            tracing::debug!(%error, "refused malformed OTLP export");
        })?;
        counters.reports.increment(1);
        if spans.count == 0 {
            return Ok(Accepted { spans: 0 });
        }
        let key = BatchKey {
            protocol: Protocol::Otlp,
            token: self.tokens.resolve(None, header_token),
            reporter: Bytes::new(),
            timestamp_offset_micros: 0,
        };
        let charge = body.len();
        let accepted = self.admit(counters, key, spans, charge)?;
        if let Some(tee) = &self.tee {
            tee.otlp(body, accepted.spans);
        }
        Ok(accepted)
    }

    /// Charges the buffer for a request of `charge_bytes` and pushes its spans.
    fn admit(
        &self,
        counters: &ProtocolCounters,
        key: BatchKey,
        spans: SpanRuns,
        charge_bytes: usize,
    ) -> Result<Accepted, IngestError> {
        let count = spans.count;
        // The span slices keep the whole request buffer alive, so that is what is charged.
        let pushed = self
            .ring
            .reserve(charge_bytes, u64::from(count))
            .and_then(|charge| self.ring.push(key, spans, charge));
        if let Err(error) = pushed {
            counters.refused.increment(1);
            let reason = match error {
                PushError::Full { .. } => DropReason::BufferFull,
                PushError::Closed => DropReason::Shutdown,
            };
            telemetry::count_dropped(reason, u64::from(count));
            return Err(error.into());
        }
        counters.spans.increment(u64::from(count));
        Ok(Accepted { spans: count })
    }
}
