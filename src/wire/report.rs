//! Zero-copy scan of a Lightstep `ReportRequest`, and the header that starts a batch of one.
//!
//! The scan finds the reporter, the token, the clock offset and the client's own drop count,
//! and hands spans out as runs of whole `spans` fields sliced from the request. It checks
//! the framing of each span's top-level fields but never decodes a span, and treats strings as
//! bytes (real clients send non-UTF-8).

use bytes::Bytes;

use super::{Fields, LEN, Value, WireError, put_varint, varint_len};

// ReportRequest fields.
const REPORTER: u32 = 1;
const AUTH: u32 = 2;
const SPANS: u32 = 3;
const TIMESTAMP_OFFSET_MICROS: u32 = 5;
const INTERNAL_METRICS: u32 = 6;
// Auth.access_token.
const ACCESS_TOKEN: u32 = 1;
// InternalMetrics.counts, and MetricsSample's fields.
const COUNTS: u32 = 4;
const SAMPLE_NAME: u32 = 1;
const SAMPLE_INT: u32 = 2;
const SAMPLE_DOUBLE: u32 = 3;
/// Name of the count in which tracers report spans they dropped themselves.
const SPANS_DROPPED: &[u8] = b"spans.dropped";

/// Spans of one request: runs of consecutive whole fields, tag and length included (`spans`
/// fields of a Lightstep report, `resource_spans` fields of an OTLP export), each a slice of
/// the request buffer, ready to be appended to a batch as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanRuns {
    /// The runs, in request order.
    pub runs: Vec<Bytes>,
    /// How many spans the runs hold.
    pub count: u32,
    /// Total bytes of the runs.
    pub bytes: usize,
}

/// What the pipeline needs of one `ReportRequest`, without a decode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportScan {
    /// Payload of the `reporter` field (empty when absent).
    pub reporter: Bytes,
    /// `auth.access_token`, when the body carries one.
    pub access_token: Option<Bytes>,
    /// `timestamp_offset_micros`: server clock minus client clock.
    pub timestamp_offset_micros: i64,
    /// The client's own `spans.dropped` count from `internal_metrics`.
    pub client_dropped_spans: u64,
    /// The spans.
    pub spans: SpanRuns,
}

/// Scans `buf` as a `ReportRequest`. Runs of consecutive spans are cut so that none grows past
/// `max_run_bytes` (a single larger span still forms its own run).
pub fn scan_report(buf: &Bytes, max_run_bytes: usize) -> Result<ReportScan, WireError> {
    let mut scan = ReportScan::default();
    let mut reporter: Option<(usize, usize)> = None;
    let mut merged_reporter: Option<Vec<u8>> = None;
    let mut spans = SpanCollector::new(buf, max_run_bytes);

    let mut fields = Fields::new(buf);
    loop {
        // Spans come back to back: read each run of them on the short path.
        fields.take_run(tag(SPANS, LEN), |field_start, start, end| {
            spans.add(field_start, start, end)
        })?;
        let Some(field) = fields.next() else { break };
        let field = field?;
        match field.number {
            // A span whose tag is spelled some longer way (or that has a wrong wire type).
            SPANS => {
                let (start, end) = field.len_range()?;
                spans.add(field.start, start, end)?;
            }
            REPORTER => {
                let range = field.len_range()?;
                // A repeated message field merges; concatenating the encodings is that merge.
                // Real clients send one reporter, so only this rare path allocates.
                match (reporter, merged_reporter.as_mut()) {
                    (None, _) => reporter = Some(range),
                    (Some(first), None) => {
                        let mut merged = buf[first.0..first.1].to_vec();
                        merged.extend_from_slice(&buf[range.0..range.1]);
                        merged_reporter = Some(merged);
                    }
                    (Some(_), Some(merged)) => merged.extend_from_slice(&buf[range.0..range.1]),
                }
            }
            AUTH => {
                let (start, end) = field.len_range()?;
                for inner in Fields::within(buf, start, end) {
                    let inner = inner?;
                    if inner.number == ACCESS_TOKEN {
                        let (s, e) = inner.len_range()?;
                        scan.access_token = Some(buf.slice(s..e));
                    }
                }
            }
            TIMESTAMP_OFFSET_MICROS => scan.timestamp_offset_micros = field.varint()? as i64,
            INTERNAL_METRICS => {
                let (start, end) = field.len_range()?;
                let dropped = dropped_count(buf, start, end)?;
                scan.client_dropped_spans = scan.client_dropped_spans.saturating_add(dropped);
            }
            _ => {} // Unknown fields are skipped, as protobuf requires.
        }
    }
    scan.spans = spans.finish()?;
    scan.reporter = match (merged_reporter, reporter) {
        (Some(merged), _) => Bytes::from(merged),
        (None, Some((start, end))) => buf.slice(start..end),
        (None, None) => Bytes::new(),
    };
    Ok(scan)
}

/// Gathers the spans of one report into runs as the walk finds them, checking their framing
/// two at a time (see `check_fields_pair`): one span waits for its partner.
struct SpanCollector<'a> {
    buf: &'a Bytes,
    max_run_bytes: usize,
    /// Payload range of a span whose framing is not checked yet.
    unchecked: Option<(usize, usize)>,
    /// The run being grown: from the first span's tag to the last span's end.
    run: Option<(usize, usize)>,
    spans: SpanRuns,
}

impl<'a> SpanCollector<'a> {
    fn new(buf: &'a Bytes, max_run_bytes: usize) -> Self {
        Self {
            buf,
            max_run_bytes,
            unchecked: None,
            run: None,
            spans: SpanRuns::default(),
        }
    }

    /// Takes the span field `field_start..end` whose payload starts at `start`.
    #[inline(always)]
    fn add(&mut self, field_start: usize, start: usize, end: usize) -> Result<(), WireError> {
        match self.unchecked.take() {
            Some(first) => super::check_fields_pair(self.buf, first, (start, end))?,
            None => self.unchecked = Some((start, end)),
        }
        self.spans.count += 1;
        match &mut self.run {
            Some((run_start, run_end))
                if *run_end == field_start && end - *run_start <= self.max_run_bytes =>
            {
                *run_end = end;
            }
            run => {
                if let Some(done) = run.replace((field_start, end)) {
                    self.close_run(done);
                }
            }
        }
        Ok(())
    }

    fn close_run(&mut self, (start, end): (usize, usize)) {
        self.spans.bytes += end - start;
        self.spans.runs.push(self.buf.slice(start..end));
    }

    /// Checks the span still waiting and closes the last run.
    fn finish(mut self) -> Result<SpanRuns, WireError> {
        if let Some((start, end)) = self.unchecked.take() {
            check_framing(self.buf, start, end)?;
        }
        if let Some(done) = self.run.take() {
            self.close_run(done);
        }
        Ok(self.spans)
    }
}

/// Checks that `field` is exactly one whole `spans` field (tag `0x1A`) with sound framing:
/// how a span that arrived on its own (one chunk of a streamed upload) is admitted.
pub fn check_span_field(field: &[u8]) -> Result<(), WireError> {
    let mut fields = Fields::new(field);
    let span = fields
        .next()
        .ok_or(WireError::Truncated { field: SPANS })??;
    let (start, end) = span.len_range()?;
    if span.number != SPANS || span.end != field.len() {
        return Err(WireError::UnexpectedWireType {
            field: span.number,
            wire_type: LEN,
            expected: LEN,
        });
    }
    check_framing(field, start, end)
}

/// Walks a span's top-level fields so a cut or garbled span is refused at the door instead of
/// poisoning an upstream batch.
#[inline]
fn check_framing(buf: &[u8], start: usize, end: usize) -> Result<(), WireError> {
    super::check_fields(buf, start, end)
}

/// Sums the `spans.dropped` samples in `InternalMetrics.counts`.
fn dropped_count(buf: &[u8], start: usize, end: usize) -> Result<u64, WireError> {
    let mut total = 0u64;
    for field in Fields::within(buf, start, end) {
        let field = field?;
        if field.number != COUNTS {
            continue;
        }
        let (s, e) = field.len_range()?;
        let mut is_dropped = false;
        let mut value = 0u64;
        for sample in Fields::within(buf, s, e) {
            let sample = sample?;
            match (sample.number, sample.value) {
                (SAMPLE_NAME, Value::Len { start, end }) => {
                    is_dropped = &buf[start..end] == SPANS_DROPPED;
                }
                (SAMPLE_INT, Value::Varint(v)) => value = (v as i64).max(0) as u64,
                (SAMPLE_DOUBLE, Value::Fixed64(bits)) => {
                    let v = f64::from_bits(bits);
                    value = if v.is_finite() && v > 0.0 {
                        v as u64
                    } else {
                        0
                    };
                }
                _ => {}
            }
        }
        if is_dropped {
            total = total.saturating_add(value);
        }
    }
    Ok(total)
}

/// Writes the fields that open a batched `ReportRequest`: the reporter, the auth with `token`
/// (omitted when empty) and the clock offset (omitted when zero). Span runs follow it as-is.
pub fn write_report_header(out: &mut Vec<u8>, reporter: &[u8], token: &[u8], offset: i64) {
    out.push(tag(REPORTER, LEN));
    put_varint(out, reporter.len() as u64);
    out.extend_from_slice(reporter);
    if !token.is_empty() {
        let auth_len = 1 + varint_len(token.len() as u64) + token.len();
        out.push(tag(AUTH, LEN));
        put_varint(out, auth_len as u64);
        out.push(tag(ACCESS_TOKEN, LEN));
        put_varint(out, token.len() as u64);
        out.extend_from_slice(token);
    }
    if offset != 0 {
        out.push(tag(TIMESTAMP_OFFSET_MICROS, super::VARINT));
        put_varint(out, offset as u64);
    }
}

/// The fields that open a batched `ReportRequest`, as [`write_report_header`] writes them.
pub fn report_header(reporter: &[u8], token: &[u8], offset: i64) -> Bytes {
    let mut header = Vec::with_capacity(report_header_len(reporter, token, offset));
    write_report_header(&mut header, reporter, token, offset);
    Bytes::from(header)
}

/// A whole `ReportRequest` put back together from its parts: the header fields and the span
/// runs the scanner cut (a streamed upload's pieces, or a batch). Off the hot path only: it
/// copies.
pub fn assemble_report(reporter: &[u8], token: &[u8], offset: i64, runs: &[Bytes]) -> Vec<u8> {
    let runs_len: usize = runs.iter().map(Bytes::len).sum();
    let mut report = Vec::with_capacity(report_header_len(reporter, token, offset) + runs_len);
    write_report_header(&mut report, reporter, token, offset);
    for run in runs {
        report.extend_from_slice(run);
    }
    report
}

/// Size of the header [`write_report_header`] writes.
pub fn report_header_len(reporter: &[u8], token: &[u8], offset: i64) -> usize {
    let mut len = 1 + varint_len(reporter.len() as u64) + reporter.len();
    if !token.is_empty() {
        let auth_len = 1 + varint_len(token.len() as u64) + token.len();
        len += 1 + varint_len(auth_len as u64) + auth_len;
    }
    if offset != 0 {
        len += 1 + varint_len(offset as u64);
    }
    len
}

const fn tag(field: u32, wire_type: u8) -> u8 {
    // Every field written here has a number below 16, so its tag is one byte.
    ((field << 3) as u8) | wire_type
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::collector as pb;
    use proptest::prelude::*;
    use prost::Message;

    fn key_value() -> impl Strategy<Value = pb::KeyValue> {
        (
            "[a-z._]{0,12}",
            prop_oneof![
                ".{0,20}".prop_map(pb::key_value::Value::StringValue),
                any::<i64>().prop_map(pb::key_value::Value::IntValue),
                any::<f64>().prop_map(pb::key_value::Value::DoubleValue),
                any::<bool>().prop_map(pb::key_value::Value::BoolValue),
                "\\{\"a\":[0-9]{1,3}\\}".prop_map(pb::key_value::Value::JsonValue),
            ],
        )
            .prop_map(|(key, value)| pb::KeyValue {
                key,
                value: Some(value),
            })
    }

    fn span() -> impl Strategy<Value = pb::Span> {
        (
            any::<u64>(),
            any::<u64>(),
            ".{0,16}",
            proptest::collection::vec(key_value(), 0..6),
            any::<u64>(),
            proptest::option::of((0i64..2_000_000_000, 0i32..1_000_000_000)),
            proptest::collection::vec((any::<u64>(), 0i32..2), 0..3),
        )
            .prop_map(
                |(trace_id, span_id, name, tags, duration, start, refs)| pb::Span {
                    span_context: Some(pb::SpanContext {
                        trace_id,
                        span_id,
                        baggage: Default::default(),
                    }),
                    operation_name: name,
                    references: refs
                        .into_iter()
                        .map(|(id, rel)| pb::Reference {
                            relationship: rel,
                            span_context: Some(pb::SpanContext {
                                trace_id,
                                span_id: id,
                                baggage: Default::default(),
                            }),
                        })
                        .collect(),
                    start_timestamp: start
                        .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                    duration_micros: duration,
                    tags,
                    logs: vec![],
                },
            )
    }

    fn report() -> impl Strategy<Value = pb::ReportRequest> {
        (
            proptest::option::of((any::<u64>(), proptest::collection::vec(key_value(), 0..4))),
            proptest::option::of("[ -~]{0,40}"),
            proptest::collection::vec(span(), 0..20),
            any::<i64>(),
            proptest::option::of(0i64..1000),
        )
            .prop_map(
                |(reporter, token, spans, offset, dropped)| pb::ReportRequest {
                    reporter: reporter
                        .map(|(reporter_id, tags)| pb::Reporter { reporter_id, tags }),
                    auth: token.map(|access_token| pb::Auth { access_token }),
                    spans,
                    timestamp_offset_micros: offset,
                    internal_metrics: dropped.map(|d| pb::InternalMetrics {
                        counts: vec![
                            pb::MetricsSample {
                                name: "spans.dropped".into(),
                                value: Some(pb::metrics_sample::Value::IntValue(d)),
                            },
                            pb::MetricsSample {
                                name: "other".into(),
                                value: Some(pb::metrics_sample::Value::IntValue(7)),
                            },
                        ],
                        ..Default::default()
                    }),
                },
            )
    }

    fn concat(runs: &[Bytes]) -> Vec<u8> {
        runs.iter().flat_map(|r| r.iter().copied()).collect()
    }

    proptest! {
        #[test]
        fn scan_agrees_with_prost(req in report(), max_run in 1usize..4096) {
            let buf = Bytes::from(req.encode_to_vec());
            let scan = scan_report(&buf, max_run).unwrap();
            let reporter = pb::Reporter::decode(scan.reporter.clone()).unwrap();
            prop_assert_eq!(reporter, req.reporter.clone().unwrap_or_default());
            // An empty token encodes to nothing: absent and empty are the same on the wire.
            let token = req.auth.as_ref().map(|a| a.access_token.clone()).unwrap_or_default();
            prop_assert_eq!(scan.access_token.unwrap_or_default(), token.as_bytes());
            prop_assert_eq!(scan.timestamp_offset_micros, req.timestamp_offset_micros);
            prop_assert_eq!(
                scan.client_dropped_spans,
                req.internal_metrics.as_ref().map(|m| m.counts[0].value).map(|v| match v {
                    Some(pb::metrics_sample::Value::IntValue(d)) => d as u64,
                    _ => 0,
                }).unwrap_or(0)
            );
            prop_assert_eq!(scan.spans.count as usize, req.spans.len());
            let joined = concat(&scan.spans.runs);
            prop_assert_eq!(joined.len(), scan.spans.bytes);
            let spans_only = pb::ReportRequest::decode(joined.as_slice()).unwrap();
            prop_assert_eq!(spans_only.spans, req.spans.clone());
            for run in &scan.spans.runs {
                // A run only passes the limit when it is one span on its own.
                let single = pb::ReportRequest::decode(run.clone()).unwrap().spans.len() == 1;
                prop_assert!(run.len() <= max_run || single);
            }
        }

        #[test]
        fn batch_header_plus_runs_is_the_same_report(req in report()) {
            let buf = Bytes::from(req.encode_to_vec());
            let scan = scan_report(&buf, usize::MAX).unwrap();
            let token = scan.access_token.clone().unwrap_or_default();
            let mut out = Vec::new();
            write_report_header(&mut out, &scan.reporter, &token, scan.timestamp_offset_micros);
            prop_assert_eq!(
                out.len(),
                report_header_len(&scan.reporter, &token, scan.timestamp_offset_micros)
            );
            out.extend_from_slice(&concat(&scan.spans.runs));
            let batch = pb::ReportRequest::decode(out.as_slice()).unwrap();
            prop_assert_eq!(batch.reporter.unwrap_or_default(), req.reporter.clone().unwrap_or_default());
            prop_assert_eq!(batch.auth.map(|a| a.access_token).unwrap_or_default(),
                req.auth.as_ref().map(|a| a.access_token.clone()).unwrap_or_default());
            prop_assert_eq!(batch.timestamp_offset_micros, req.timestamp_offset_micros);
            prop_assert_eq!(batch.spans, req.spans);
        }

        #[test]
        fn truncation_is_an_error_never_a_panic(req in report(), cut in any::<prop::sample::Index>()) {
            let full = req.encode_to_vec();
            prop_assume!(!full.is_empty());
            let cut = cut.index(full.len());
            let buf = Bytes::copy_from_slice(&full[..cut]);
            // Cutting at a field boundary leaves a valid, shorter report; a cut anywhere else
            // lands inside the last top-level field, which both must refuse.
            let ours = scan_report(&buf, usize::MAX).is_ok();
            let theirs = pb::ReportRequest::decode(buf.clone()).is_ok();
            prop_assert_eq!(ours, theirs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan_report(&Bytes::from(bytes), 64);
        }
    }

    #[test]
    fn non_utf8_strings_pass_through() {
        // A span whose operation_name is invalid UTF-8: prost refuses it, we must not.
        let mut span = vec![0x12, 0x02, 0xff, 0xfe];
        span.extend_from_slice(&[0x28, 0x05]); // duration_micros = 5
        let mut buf = vec![0x1a, span.len() as u8];
        buf.extend_from_slice(&span);
        let buf = Bytes::from(buf);
        assert!(pb::ReportRequest::decode(buf.clone()).is_err());
        let scan = scan_report(&buf, 1024).unwrap();
        assert_eq!(scan.spans.count, 1);
        assert_eq!(scan.spans.runs, vec![buf.clone()]);
    }

    #[test]
    fn garbled_span_is_refused() {
        // Span field claims 3 bytes holding a field that claims 9.
        let buf = Bytes::from_static(&[0x1a, 0x03, 0x12, 0x09, b'x']);
        assert_eq!(
            scan_report(&buf, 1024),
            Err(WireError::Truncated { field: 2 })
        );
    }

    #[test]
    fn wrong_wire_type_for_known_field_is_refused() {
        // spans (3) as a varint.
        let buf = Bytes::from_static(&[0x18, 0x01]);
        assert!(matches!(
            scan_report(&buf, 1024),
            Err(WireError::UnexpectedWireType { field: 3, .. })
        ));
    }
}
