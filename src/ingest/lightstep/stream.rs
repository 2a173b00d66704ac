//! The streamed upload of the C++ tracer (and PyPI `lightstep-streaming`): one
//! `POST /api/v2/reports` with `Transfer-Encoding: chunked` that stays open for seconds,
//! carrying the reporter, auth and internal metrics first and then one `0x1A` span per chunk.
//!
//! Spans enter the pipeline as their fields complete, while the upload is still open; chunk
//! boundaries are not trusted (fields are split from the byte stream itself). Memory per
//! stream is one incomplete field at most, bounded by `max-message-bytes`. A stream cut off
//! mid-way keeps every complete span; the partial one is counted as dropped.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::ingest::intake::{IngestError, Intake};
use crate::ingest::refused::Refused;
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
    /// The client went away before the terminal chunk.
    #[error("stream cut off: {0}")]
    Cut(String),
}

impl From<StreamError> for Refused {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Ingest(error) => error.into(),
            StreamError::TooLarge { .. } => Refused::too_large(error),
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
    mut body: axum::body::Body,
    max_field: usize,
) -> Result<(), StreamError> {
    let mut pending = BytesMut::new();
    let mut head = BytesMut::new();
    let mut head_scan: Option<ReportScan> = None;
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
                head.extend_from_slice(&field);
                head_scan = None;
            }
        }
        if pending.len() > max_field {
            return Err(StreamError::TooLarge { limit: max_field });
        }
        if spans.count > 0 {
            let scan = match &mut head_scan {
                Some(scan) => scan,
                None => head_scan.insert(scan_report(&Bytes::copy_from_slice(&head), usize::MAX)?),
            };
            let charge = spans.bytes;
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
        let scan = scan_report(&head.freeze(), usize::MAX)?;
        intake.lightstep_scanned(scan, header_token.as_deref(), 0)?;
    }
    Ok(())
}
