//! Zero-copy scan of an OTLP `ExportTraceServiceRequest`.
//!
//! Hands out the `resource_spans` fields (tag and length included) as slices of the request:
//! concatenating such fields from many requests is itself a valid request, so OTLP batches need
//! no decode and no re-encode. Spans are counted, their top-level framing checked, and their
//! ids checked for length (a trace id is 16 bytes, span ids 8, or absent), never decoded.

use bytes::Bytes;

use super::report::SpanRuns;
use super::{Fields, WireError};

// ExportTraceServiceRequest.resource_spans; ResourceSpans.scope_spans; ScopeSpans.spans.
const RESOURCE_SPANS: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SPANS: u32 = 2;
// Span id fields.
const TRACE_ID: u32 = 1;
const SPAN_ID: u32 = 2;
const PARENT_SPAN_ID: u32 = 4;

/// Why an OTLP request is refused, beyond plain protobuf framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    /// The protobuf framing is broken.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An id has the wrong length.
    #[error("invalid {field}: {len} bytes, expected {expected} (or none)")]
    BadId {
        /// Which id.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length OTLP requires.
        expected: usize,
    },
}

/// Scans `buf` as an `ExportTraceServiceRequest`: runs of whole `resource_spans` fields, cut
/// so that no run passes `max_run_bytes` (one larger field still forms its own run).
pub fn scan_export(buf: &Bytes, max_run_bytes: usize) -> Result<SpanRuns, OtlpError> {
    let mut out = SpanRuns::default();
    let mut run: Option<(usize, usize)> = None;
    for field in Fields::new(buf) {
        let field = field?;
        if field.number != RESOURCE_SPANS {
            continue;
        }
        let (start, end) = field.len_range()?;
        let spans = count_resource_spans(buf, start, end)?;
        if spans == 0 {
            continue; // Nothing to forward; keeps empty resources out of batches.
        }
        out.count += spans;
        out.bytes += field.end - field.start;
        run = match run {
            Some((s, e)) if e == field.start && field.end - s <= max_run_bytes => {
                Some((s, field.end))
            }
            Some((s, e)) => {
                out.runs.push(buf.slice(s..e));
                Some((field.start, field.end))
            }
            None => Some((field.start, field.end)),
        };
    }
    if let Some((s, e)) = run {
        out.runs.push(buf.slice(s..e));
    }
    Ok(out)
}

fn count_resource_spans(buf: &[u8], start: usize, end: usize) -> Result<u32, OtlpError> {
    let mut spans = SpanPairs::default();
    for field in Fields::within(buf, start, end) {
        let field = field?;
        if field.number != SCOPE_SPANS {
            continue;
        }
        let (s, e) = field.len_range()?;
        let mut inner = Fields::within(buf, s, e);
        loop {
            // A scope's spans come back to back: read each run of them on the short path.
            inner.take_run(SPANS_TAG, |_, start, end| spans.add(buf, (start, end)))?;
            let Some(field) = inner.next() else { break };
            let field = field?;
            if field.number == SPANS {
                spans.add(buf, field.len_range()?)?;
            }
        }
    }
    spans.finish(buf)
}

/// One-byte tag of `ScopeSpans.spans`.
const SPANS_TAG: u8 = (SPANS as u8) << 3 | super::LEN;

/// Counts spans and checks them two at a time (see `wire::both_well_framed`): one waits for its
/// partner.
#[derive(Default)]
struct SpanPairs {
    count: u32,
    unchecked: Option<(usize, usize)>,
}

impl SpanPairs {
    #[inline(always)]
    fn add(&mut self, buf: &[u8], span: (usize, usize)) -> Result<(), OtlpError> {
        self.count += 1;
        match self.unchecked.take() {
            Some(first) => check_span_pair(buf, first, span),
            None => {
                self.unchecked = Some(span);
                Ok(())
            }
        }
    }

    fn finish(self, buf: &[u8]) -> Result<u32, OtlpError> {
        if let Some((start, end)) = self.unchecked {
            check_span(buf, start, end)?;
        }
        Ok(self.count)
    }
}

/// The length OTLP requires of an id field (by field number of `Span`), and its name.
#[inline(always)]
fn id_field(number: u32) -> Option<(&'static str, usize)> {
    match number {
        TRACE_ID => Some(("trace_id", 16)),
        SPAN_ID => Some(("span_id", 8)),
        PARENT_SPAN_ID => Some(("parent_span_id", 8)),
        _ => None,
    }
}

/// Whether a length-delimited field of a span may have this length: ids are empty or exact.
#[inline(always)]
fn id_len_allowed(number: u32, len: usize) -> bool {
    id_field(number).is_none_or(|(_, expected)| len == 0 || len == expected)
}

/// [`check_span`] on two spans, `a`'s error first; both are walked at once on the fast path.
fn check_span_pair(buf: &[u8], a: (usize, usize), b: (usize, usize)) -> Result<(), OtlpError> {
    if super::both_well_framed(
        super::clamped(buf, a),
        super::clamped(buf, b),
        id_len_allowed,
    ) {
        return Ok(());
    }
    check_span(buf, a.0, a.1)?;
    check_span(buf, b.0, b.1)
}

#[inline]
fn check_span(buf: &[u8], start: usize, end: usize) -> Result<(), OtlpError> {
    super::check_fields_with(buf, start, end, |number, len| match id_field(number) {
        Some((field, expected)) if len != 0 && len != expected => Err(OtlpError::BadId {
            field,
            len,
            expected,
        }),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use proptest::prelude::*;
    use prost::Message;

    fn span() -> impl Strategy<Value = Span> {
        (
            any::<[u8; 16]>(),
            any::<u64>(),
            proptest::option::of(any::<u64>()),
            ".{0,12}",
            0i32..6,
        )
            .prop_map(|(trace, id, parent, name, kind)| Span {
                trace_id: trace.to_vec(),
                span_id: id.to_be_bytes().to_vec(),
                parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
                name,
                kind,
                start_time_unix_nano: 1,
                end_time_unix_nano: 2,
                ..Default::default()
            })
    }

    fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        proptest::collection::vec(
            (
                "[a-z]{1,8}",
                proptest::collection::vec(proptest::collection::vec(span(), 0..5), 0..3),
            ),
            0..4,
        )
        .prop_map(|resources| ExportTraceServiceRequest {
            resource_spans: resources
                .into_iter()
                .map(|(service, scopes)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(service)),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_spans: scopes
                        .into_iter()
                        .map(|spans| ScopeSpans {
                            spans,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    proptest! {
        #[test]
        fn runs_hold_every_span_with_its_resource(req in request(), max_run in 1usize..2048) {
            let buf = Bytes::from(req.encode_to_vec());
            let scan = scan_export(&buf, max_run).unwrap();
            let joined: Vec<u8> = scan.runs.iter().flat_map(|r| r.iter().copied()).collect();
            prop_assert_eq!(joined.len(), scan.bytes);
            let back = ExportTraceServiceRequest::decode(joined.as_slice()).unwrap();
            let with_spans: Vec<_> = req
                .resource_spans
                .into_iter()
                .filter(|rs| rs.scope_spans.iter().any(|s| !s.spans.is_empty()))
                .collect();
            let total: usize = with_spans.iter().flat_map(|rs| &rs.scope_spans).map(|s| s.spans.len()).sum();
            prop_assert_eq!(scan.count as usize, total);
            prop_assert_eq!(back.resource_spans, with_spans);
        }

        #[test]
        fn one_wrong_id_anywhere_is_named(
            mut req in request(),
            pick in any::<prop::sample::Index>(),
            which in 0usize..3,
            len in 1usize..24,
        ) {
            if req.resource_spans.iter().flat_map(|rs| &rs.scope_spans).all(|s| s.spans.is_empty()) {
                req.resource_spans.push(ResourceSpans {
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            let mut spans: Vec<&mut Span> = req
                .resource_spans
                .iter_mut()
                .flat_map(|rs| &mut rs.scope_spans)
                .flat_map(|s| &mut s.spans)
                .collect();
            let at = pick.index(spans.len());
            let span = &mut spans[at];
            let (field, expected, id) = match which {
                0 => ("trace_id", 16, &mut span.trace_id),
                1 => ("span_id", 8, &mut span.span_id),
                _ => ("parent_span_id", 8, &mut span.parent_span_id),
            };
            let len = if len == expected { len + 1 } else { len };
            *id = vec![7; len];
            let scanned = scan_export(&Bytes::from(req.encode_to_vec()), 1 << 20);
            prop_assert_eq!(scanned, Err(OtlpError::BadId { field, len, expected }));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = scan_export(&Bytes::from(bytes), 64);
        }
    }

    #[test]
    fn wrong_id_lengths_are_refused() {
        let mut req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![1; 8],
                        span_id: vec![2; 8],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let err = scan_export(&req.encode_to_vec().into(), 1 << 20).unwrap_err();
        assert_eq!(
            err,
            OtlpError::BadId {
                field: "trace_id",
                len: 8,
                expected: 16
            }
        );
        req.resource_spans[0].scope_spans[0].spans[0].trace_id = vec![1; 16];
        req.resource_spans[0].scope_spans[0].spans[0].parent_span_id = vec![3; 4];
        let err = scan_export(&req.encode_to_vec().into(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("parent_span_id"), "{err}");
    }
}
