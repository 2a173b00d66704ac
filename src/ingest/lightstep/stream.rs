//! The streamed upload of the C++ tracer (and PyPI `lightstep-streaming`): one
//! `POST /api/v2/reports` with `Transfer-Encoding: chunked` that stays open for seconds,
//! carrying the reporter, auth and internal metrics first and then one `0x1A` span per chunk.
//!
//! Spans enter the pipeline as their fields complete, while the upload is still open; chunk
//! boundaries are not trusted (fields are split from the byte stream itself). Memory per
//! stream is its head (the non-span fields: reporter, auth, internal metrics), at most
//! `max-message-bytes` in all, and one incomplete field, at most `max-message-bytes`; both are
//! charged in flight as they grow. The head is scanned in place when it changes, not copied
//! per frame, and the reports cut from the stream pin only their spans and a copy of the
//! reporter (shared while it does not change), never the head. A stream cut off mid-way keeps
//! every complete span; the partial one is counted as dropped.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::ingest::intake::{IngestError, Intake, RefusalReason};
use crate::ingest::refused::Refused;
use crate::pipeline::{BudgetFull, Charge, Part, Protocol, REQUEST_OVERHEAD};
use crate::wire::WireError;
use crate::wire::report::{ReportScan, SpanRuns, check_span_field, scan_report};

/// Why a streamed upload ended badly.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes are not a `ReportRequest`.
    #[error("malformed streamed report: {0}")]
    Malformed(#[from] WireError),
    /// The pipeline refused its spans.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// One field is larger than `max-message-bytes`.
    #[error("a streamed field is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The non-span fields together are larger than `max-message-bytes`.
    #[error("the streamed report's non-span fields are larger than the {limit}-byte limit")]
    HeadTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The memory budget cannot hold the stream's buffers now; retry later.
    #[error("cannot take the stream now: {0}")]
    Budget(#[from] BudgetFull),
    /// The client went away before the terminal chunk.
    #[error("stream cut off: {0}")]
    Cut(String),
}

impl From<StreamError> for Refused {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Ingest(error) => error.into(),
            StreamError::TooLarge { .. } | StreamError::HeadTooLarge { .. } => {
                Refused::too_large(error)
            }
            StreamError::Budget(_) => Refused::unavailable(error),
            StreamError::Malformed(_) | StreamError::Cut(_) => Refused::bad_request(error),
        }
    }
}

const SPANS: u32 = 3;
const SPANS_TAG: u8 = 0x1a;

/// Reads a streamed upload to its end, feeding spans to `intake` as they complete.
pub async fn upload(
    intake: &Intake,
    header_token: Option<Bytes>,
    body: axum::body::Body,
    max_field: usize,
) -> Result<(), StreamError> {
    read(intake, header_token, body, max_field)
        .await
        .inspect_err(|error| {
            let reason = match error {
                StreamError::TooLarge { .. } | StreamError::HeadTooLarge { .. } => {
                    RefusalReason::TooLarge
                }
                StreamError::Budget(_) => RefusalReason::Budget,
                _ => return,
            };
            intake.count_refused(Protocol::Lightstep, reason);
        })
}

async fn read(
    intake: &Intake,
    header_token: Option<Bytes>,
    mut body: axum::body::Body,
    max_field: usize,
) -> Result<(), StreamError> {
    let budget = intake.ring().budget();
    // The stream's own buffers (head and incomplete field), paid for as they grow.
    let mut held = budget.reserve(Part::InFlight, REQUEST_OVERHEAD, 0)?;
    let mut pending = BytesMut::new();
    let mut head = BytesMut::new();
    let mut head_scan: Option<ReportScan> = None;
    let mut reporter = Bytes::new();
    loop {
        let data = match body.frame().await {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
            Some(Err(error)) => {
                if pending.first() == Some(&SPANS_TAG) {
                    intake.lightstep_truncated(1);
                }
                return Err(StreamError::Cut(error.to_string()));
            }
        };
        held.resize(REQUEST_OVERHEAD + head.capacity() + pending.len() + data.len())?;
        pending.extend_from_slice(&data);
        let mut spans = SpanRuns::default();
        while let Some((number, len)) = crate::wire::complete_field(&pending)? {
            let field = pending.split_to(len).freeze();
            if number == SPANS {
                check_span_field(&field)?;
                spans.count += 1;
                spans.bytes += field.len();
                spans.runs.push(field);
            } else {
                if head.len() + field.len() > max_field {
                    return Err(StreamError::HeadTooLarge { limit: max_field });
                }
                held.resize(REQUEST_OVERHEAD + head.len() + field.len() + pending.capacity())?;
                head.extend_from_slice(&field);
                head_scan = None;
            }
        }
        if pending.len() > max_field {
            return Err(StreamError::TooLarge { limit: max_field });
        }
        held.resize(REQUEST_OVERHEAD + head.capacity() + pending.capacity())?;
        if spans.count > 0 {
            let scan = match &mut head_scan {
                Some(scan) => scan,
                None => head_scan.insert(scan_head(&mut head, &mut reporter)?),
            };
            let charge = report_charge(intake, spans.bytes + scan.reporter.len())?;
            let report = ReportScan {
                spans,
                ..scan.clone()
            };
            intake.lightstep_scanned(report, header_token.as_deref(), charge)?;
            // The client's drop count was counted with the first spans; count it once.
            scan.client_dropped_spans = 0;
        }
    }
    if !pending.is_empty() {
        if pending.first() == Some(&SPANS_TAG) {
            intake.lightstep_truncated(1);
        }
        return Err(StreamError::Malformed(WireError::Truncated { field: 0 }));
    }
    if head_scan.is_none() && !head.is_empty() {
        // A stream with header fields and no spans: still a report (clients' first reports
        // are often empty), counted like one.
        let scan = scan_head(&mut head, &mut reporter)?;
        let charge = report_charge(intake, scan.reporter.len())?;
        intake.lightstep_scanned(scan, header_token.as_deref(), charge)?;
    }
    Ok(())
}

/// The in-flight charge of one cut of the stream: what its slices pin, plus a request's
/// overhead (which the intake swaps for a report's).
fn report_charge(intake: &Intake, pinned: usize) -> Result<Charge, StreamError> {
    Ok(intake
        .ring()
        .budget()
        .reserve(Part::InFlight, pinned + REQUEST_OVERHEAD, 0)?)
}

/// Scans the head in place (no copy of it) and gives it back; the scan's reporter and token
/// are copied out, so reports never pin the head. `reporter` is the copy made last time,
/// reused while the reporter is unchanged.
fn scan_head(head: &mut BytesMut, reporter: &mut Bytes) -> Result<ReportScan, WireError> {
    let frozen = std::mem::take(head).freeze();
    let scanned = scan_report(&frozen, usize::MAX);
    let scan = scanned.map(|mut scan| {
        if scan.reporter != *reporter {
            *reporter = Bytes::copy_from_slice(&scan.reporter);
        }
        scan.reporter = reporter.clone();
        scan.access_token = scan.access_token.map(|t| Bytes::copy_from_slice(&t));
        scan
    });
    *head = frozen
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    scan
}
