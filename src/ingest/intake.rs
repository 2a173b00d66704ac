//! The one door into the pipeline, shared by every protocol handler: scan a report, resolve its
//! token, count it, and push its span slices into the ring. Handlers only parse envelopes and
//! map [`IngestError`] to their own statuses.
//!
//! When the upstream protocol is forced (`--upstream-protocol lightstep|otlp`) and a report
//! arrives in the other one, this is where it is translated: decoded, translated by
//! [`crate::translate`], re-encoded, and pushed through the target protocol's zero-copy path
//! like any request of that protocol. With `auto` nothing is ever decoded.

use bytes::Bytes;
use metrics::Counter;

use super::auth::{TokenError, TokenPolicy};
use crate::pipeline::{
    BatchKey, Charge, Protocol, PushError, REPORT_OVERHEAD, REQUEST_OVERHEAD, Ring,
};
use crate::telemetry::{self, DropReason};
use crate::translate::{self, TranslateError};
use crate::wire::WireError;
use crate::wire::otlp::{OtlpError, scan_export};
use crate::wire::report::{ReportScan, SpanRuns, assemble_report, report_header_len, scan_report};

/// Why a report was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not a well-formed Lightstep report.
    #[error("malformed ReportRequest: {0}")]
    Malformed(#[from] WireError),
    /// The body is not a well-formed OTLP export.
    #[error("malformed ExportTraceServiceRequest: {0}")]
    MalformedOtlp(#[from] OtlpError),
    /// The report could not be translated into the upstream protocol.
    #[error("cannot translate report for the upstream protocol: {0}")]
    Untranslatable(#[from] TranslateError),
    /// The buffer has no room (or is draining): the client should retry later.
    #[error("cannot accept report now: {0}")]
    Unavailable(#[from] PushError),
    /// The report's (or its transport's) access token is not acceptable.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Where accepted requests are also offered, as they arrived, whatever protocol they leave
/// in. The intake defines it and knows nothing of who implements it (developer mode's store
/// does). Called on the request path: it must neither block nor fail the request.
pub trait Tee: Send + Sync + std::fmt::Debug + 'static {
    /// An accepted OTLP `ExportTraceServiceRequest` holding `spans` spans.
    fn otlp(&self, body: Bytes, spans: u32);

    /// The accepted parts of a Lightstep `ReportRequest`: its encoded `Reporter`, clock offset
    /// and `spans` span fields (each a whole tagged field, as the scanner cuts them);
    /// [`assemble_report`] puts them back together.
    fn lightstep(
        &self,
        reporter: Bytes,
        timestamp_offset_micros: i64,
        runs: Vec<Bytes>,
        spans: u32,
    );
}

/// Why a request was refused before the intake saw a report (the `reason` label of
/// `cubesat_reports_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Over `--max-message-bytes`, or decoding / translating it would be (`too_large`).
    TooLarge,
    /// The memory budget has no room to read or decode it now (`budget`).
    Budget,
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
    max_message_bytes: usize,
    forced: Option<Protocol>,
    lightstep: ProtocolCounters,
    otlp: ProtocolCounters,
    /// Where accepted requests are also offered (developer mode's store, wired in `lib.rs`).
    tee: Option<Box<dyn Tee>>,
}

#[derive(Debug)]
struct ProtocolCounters {
    reports: Counter,
    spans: Counter,
    client_dropped: Counter,
    malformed: Counter,
    untranslatable: Counter,
    too_large: Counter,
    budget: Counter,
    refused: Counter,
    spool_full: Counter,
    /// Spans translated from this protocol into the other one.
    translated: Counter,
}

impl ProtocolCounters {
    /// Counts a report once it is admitted (refused reports never count as received).
    fn admitted(&self, client_dropped: u64) {
        self.reports.increment(1);
        self.client_dropped.increment(client_dropped);
    }

    fn new(protocol: Protocol) -> Self {
        let p = protocol.as_str();
        Self {
            reports: metrics::counter!(telemetry::REPORTS_RECEIVED, "protocol" => p),
            spans: metrics::counter!(telemetry::SPANS_RECEIVED, "protocol" => p),
            client_dropped: metrics::counter!(telemetry::CLIENT_DROPPED_SPANS, "protocol" => p),
            malformed: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "malformed"),
            untranslatable: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "untranslatable"),
            too_large: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "too_large"),
            budget: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "budget"),
            refused: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "unavailable"),
            spool_full: metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => p, "reason" => "spool_full"),
            translated: metrics::counter!(telemetry::SPANS_TRANSLATED, "from" => p, "to" => protocol.other().as_str()),
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
            max_message_bytes: usize::MAX,
            forced: None,
            lightstep: ProtocolCounters::new(Protocol::Lightstep),
            otlp: ProtocolCounters::new(Protocol::Otlp),
            tee: None,
        }
    }

    /// Sends every report upstream in `protocol` (translating those that arrive in the other
    /// one); `None` (`auto`) lets each leave in the protocol it arrived in.
    pub fn with_upstream_protocol(mut self, protocol: Option<Protocol>) -> Self {
        self.forced = protocol;
        self
    }

    /// Refuses translations larger than `max_message_bytes` (`--max-message-bytes`).
    pub fn with_max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// Also offers every accepted request to `tee`.
    pub fn with_tee(mut self, tee: impl Tee) -> Self {
        self.tee = Some(Box::new(tee));
        self
    }

    /// The ring it feeds.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Takes one encoded Lightstep `ReportRequest`; `header_token` is the transport's token,
    /// `charge` the in-flight charge that paid for reading it: the buffer `body` lives in plus
    /// [`REQUEST_OVERHEAD`]. An admitted report keeps that charge (moved to the ring, its
    /// request overhead swapped for [`REPORT_OVERHEAD`]), so it is never counted twice.
    pub fn lightstep_report(
        &self,
        body: Bytes,
        header_token: Option<&[u8]>,
        charge: Charge,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.lightstep;
        let scan = scan_report(&body, self.max_run_bytes).inspect_err(|error| {
            counters.malformed.increment(1);
            tracing::debug!(%error, "refused malformed report");
        })?;
        self.lightstep_scanned(scan, header_token, charge)
    }

    /// Takes a Lightstep report already split into its parts (a streamed upload's header
    /// fields and the spans that have arrived so far); `charge` pays for the memory its slices
    /// pin plus [`REQUEST_OVERHEAD`], as for [`Intake::lightstep_report`].
    pub fn lightstep_scanned(
        &self,
        scan: ReportScan,
        header_token: Option<&[u8]>,
        charge: Charge,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.lightstep;
        // Checked first, so a bad token is refused even in a report without spans.
        let token = self
            .tokens
            .resolve(scan.access_token.as_ref(), header_token)
            .map_err(|error| self.bad_token(Protocol::Lightstep, error))?;
        let client_dropped = scan.client_dropped_spans;
        if scan.spans.count == 0 {
            counters.admitted(client_dropped);
            return Ok(Accepted { spans: 0 });
        }
        // Developer mode stores the request as it arrived, whatever protocol it leaves in.
        let teed = self.tee.as_ref().map(|_| {
            (
                scan.reporter.clone(),
                scan.spans.runs.clone(),
                scan.timestamp_offset_micros,
            )
        });
        let accepted = if self.forced == Some(Protocol::Otlp) {
            self.lightstep_as_otlp(scan, token)?
        } else {
            let key = BatchKey {
                protocol: Protocol::Lightstep,
                token,
                reporter: scan.reporter,
                timestamp_offset_micros: scan.timestamp_offset_micros,
            };
            self.admit(counters, key, scan.spans, charge)?
        };
        counters.admitted(client_dropped);
        if let (Some(tee), Some((reporter, runs, offset))) = (&self.tee, teed) {
            tee.lightstep(reporter, offset, runs, accepted.spans);
        }
        Ok(accepted)
    }

    /// Counts a Lightstep report refused as malformed before it could reach the intake (the
    /// Thrift transports read their own model first).
    pub fn lightstep_malformed(&self) {
        self.lightstep.malformed.increment(1);
    }

    /// Counts a request of `protocol` refused before it reached the intake (its body or its
    /// decoded form too large, or no room in the budget to read it).
    pub fn count_refused(&self, protocol: Protocol, reason: RefusalReason) {
        let counters = match protocol {
            Protocol::Lightstep => &self.lightstep,
            Protocol::Otlp => &self.otlp,
        };
        match reason {
            RefusalReason::TooLarge => counters.too_large.increment(1),
            RefusalReason::Budget => counters.budget.increment(1),
        }
    }

    /// Counts spans lost because their stream was cut off mid-span.
    pub fn lightstep_truncated(&self, spans: u64) {
        telemetry::count_dropped(DropReason::Truncated, spans);
    }

    /// Takes one encoded OTLP `ExportTraceServiceRequest`; OTLP carries its token only in
    /// the transport's `lightstep-access-token` header. `charge` is as for
    /// [`Intake::lightstep_report`].
    pub fn otlp_export(
        &self,
        body: Bytes,
        header_token: Option<&[u8]>,
        charge: Charge,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.otlp;
        let spans = scan_export(&body, self.max_run_bytes).inspect_err(|error| {
            counters.malformed.increment(1);
            tracing::debug!(%error, "refused malformed OTLP export");
        })?;
        let token = self
            .tokens
            .resolve(None, header_token)
            .map_err(|error| self.bad_token(Protocol::Otlp, error))?;
        if spans.count == 0 {
            counters.admitted(0);
            return Ok(Accepted { spans: 0 });
        }
        let accepted = if self.forced == Some(Protocol::Lightstep) {
            self.otlp_as_lightstep(&body, u64::from(spans.count), token)?
        } else {
            let key = BatchKey {
                protocol: Protocol::Otlp,
                token,
                reporter: Bytes::new(),
                timestamp_offset_micros: 0,
            };
            self.admit(counters, key, spans, charge)?
        };
        counters.admitted(0);
        if let Some(tee) = &self.tee {
            tee.otlp(body, accepted.spans);
        }
        Ok(accepted)
    }

    /// Translates a scanned Lightstep report to OTLP and admits it as an OTLP request.
    fn lightstep_as_otlp(&self, scan: ReportScan, token: Bytes) -> Result<Accepted, IngestError> {
        let counters = &self.lightstep;
        // The scan may come from a streamed upload: rebuild the report from its parts (the
        // token is already resolved, so it is left out).
        let offset = scan.timestamp_offset_micros;
        let input = report_header_len(&scan.reporter, &[], offset) + scan.spans.bytes;
        translate::check_decoded_size(u64::from(scan.spans.count), input)
            .map_err(|error| self.untranslatable(counters, error))?;
        let report = assemble_report(&scan.reporter, &[], offset, &scan.spans.runs);
        let limit = translate::output_limit(report.len(), self.max_message_bytes);
        let translated =
            translate::report_bytes_to_export_within(&report, self.max_run_bytes, limit)
                .map_err(|error| self.untranslatable(counters, error))?;
        let spans = scan_export(&translated.body, self.max_run_bytes)?;
        let key = BatchKey {
            protocol: Protocol::Otlp,
            token,
            reporter: Bytes::new(),
            timestamp_offset_micros: 0,
        };
        // The translation is a new buffer: it is charged on its own, and the request's charge
        // (the caller's) is given back once the request is dropped.
        let charge = self
            .ring
            .reserve(translated.body.len() + REPORT_OVERHEAD, 0)
            .map_err(|error| self.refused(counters, error, u64::from(spans.count)))?;
        let accepted = self.admit_settled(counters, key, spans, charge)?;
        counters.translated.increment(u64::from(accepted.spans));
        Ok(accepted)
    }

    /// Translates an OTLP export to Lightstep reports (one per resource) and admits them all,
    /// or none: a partly accepted request would be resent whole, duplicating spans.
    fn otlp_as_lightstep(
        &self,
        body: &[u8],
        spans: u64,
        token: Bytes,
    ) -> Result<Accepted, IngestError> {
        let counters = &self.otlp;
        let limit = translate::output_limit(body.len(), self.max_message_bytes);
        let reports = translate::check_decoded_size(spans, body.len())
            .and_then(|()| translate::export_bytes_to_reports_within(body, limit))
            .map_err(|error| self.untranslatable(counters, error))?;
        let count: u32 = reports.iter().map(|r| r.spans).sum();
        let mut admitted: Vec<(BatchKey, SpanRuns, Charge)> = Vec::with_capacity(reports.len());
        for report in reports {
            let scan = scan_report(&report.body, self.max_run_bytes)?;
            let key = BatchKey {
                protocol: Protocol::Lightstep,
                token: token.clone(),
                reporter: scan.reporter,
                timestamp_offset_micros: 0,
            };
            // Charges taken so far are given back when `admitted` drops.
            let charge = self
                .ring
                .reserve(report.body.len() + REPORT_OVERHEAD, u64::from(report.spans))
                .map_err(|error| self.refused(counters, error, u64::from(count)))?;
            admitted.push((key, scan.spans, charge));
        }
        let mut left = u64::from(count);
        for (key, spans, charge) in admitted {
            let n = u64::from(spans.count);
            self.ring
                .push(key, spans, charge)
                .map_err(|error| self.refused(counters, error, left))?;
            left -= n;
        }
        counters.spans.increment(u64::from(count));
        counters.translated.increment(u64::from(count));
        Ok(Accepted { spans: count })
    }

    /// Counts a report that cannot be translated (by reason: too large, or malformed).
    fn untranslatable(&self, counters: &ProtocolCounters, error: TranslateError) -> IngestError {
        if matches!(error, TranslateError::TooLarge { .. }) {
            counters.too_large.increment(1);
        } else {
            counters.untranslatable.increment(1);
        }
        tracing::debug!(%error, "refused untranslatable report");
        error.into()
    }

    /// Counts a report refused for its token.
    fn bad_token(&self, protocol: Protocol, error: TokenError) -> IngestError {
        metrics::counter!(telemetry::REPORTS_REJECTED, "protocol" => protocol.as_str(), "reason" => error.reason())
            .increment(1);
        tracing::debug!(%error, "refused a report's access token");
        error.into()
    }

    /// Counts a refusal of `spans` spans by the ring.
    fn refused(&self, counters: &ProtocolCounters, error: PushError, spans: u64) -> IngestError {
        let reason = match error {
            PushError::Full { .. } => DropReason::BufferFull,
            PushError::Closed => DropReason::Shutdown,
            PushError::Spool(_) => DropReason::SpoolFull,
        };
        match reason {
            DropReason::SpoolFull => counters.spool_full.increment(1),
            _ => counters.refused.increment(1),
        }
        telemetry::count_dropped(reason, spans);
        error.into()
    }

    /// Hands the request's in-flight charge over to the ring with its spans: the span slices
    /// keep the whole request buffer alive, so that buffer stays charged, and the request's
    /// overhead becomes a report's. Nothing is reserved a second time.
    fn admit(
        &self,
        counters: &ProtocolCounters,
        key: BatchKey,
        spans: SpanRuns,
        mut charge: Charge,
    ) -> Result<Accepted, IngestError> {
        let pinned = charge.bytes().saturating_sub(REQUEST_OVERHEAD);
        if let Err(full) = charge.resize(pinned + REPORT_OVERHEAD) {
            return Err(self.refused(counters, full.into(), u64::from(spans.count)));
        }
        self.admit_settled(counters, key, spans, charge)
    }

    /// Pushes spans with a charge already sized for them.
    fn admit_settled(
        &self,
        counters: &ProtocolCounters,
        key: BatchKey,
        spans: SpanRuns,
        mut charge: Charge,
    ) -> Result<Accepted, IngestError> {
        let count = spans.count;
        charge.hold_spans(u64::from(count));
        if let Err(error) = self.ring.push(key, spans, charge) {
            return Err(self.refused(counters, error, u64::from(count)));
        }
        counters.spans.increment(u64::from(count));
        Ok(Accepted { spans: count })
    }
}
