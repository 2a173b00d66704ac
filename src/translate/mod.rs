//! Lightstep <-> OTLP translation as pure functions: no I/O, no metrics, no logging. The
//! intake uses it when a report arrives in one protocol and the upstream is forced to the
//! other (`--upstream-protocol`); developer mode and benchmarks call it directly. It never
//! runs on the default (`auto`) path.
//!
//! Decoding is lenient ([`decode_report`], [`decode_export`]): strings that are not UTF-8 are
//! repaired with U+FFFD instead of failing the report, so translation accepts everything the
//! zero-copy scanners accept.
//!
//! # Lightstep -> OTLP ([`report_to_export`])
//! - One `ResourceSpans` per report with one `ScopeSpans` (no scope). Reporter tags become
//!   resource attributes; `lightstep.component_name`, `lightstep.hostname`,
//!   `lightstep.tracer_platform` and `lightstep.tracer_version` also appear as `service.name`,
//!   `host.name`, `telemetry.sdk.language` and `telemetry.sdk.version` (unless already
//!   there). The `reporter_id` becomes the int attribute `lightstep.reporter_id`.
//! - `trace_id` -> 16 bytes: eight zero bytes then the big-endian u64 (W3C padding), or the
//!   full 128-bit id from an `otel.trace_id` tag whose low half matches. `span_id` -> 8 bytes.
//! - The first `CHILD_OF` reference is the parent (its trace id is ignored: Go, Python and JS
//!   send 0, meaning the same trace). Without one, a hex `parent_span_guid` tag is the parent.
//!   The tag is dropped when it names the parent. Every other reference is a link carrying
//!   `opentracing.ref_type` = `child_of` / `follows_from` (the OpenTracing shim's convention); a
//!   link's trace id 0 means the span's own trace.
//! - `start_timestamp` + `timestamp_offset_micros` -> start; end = start + duration. Log
//!   timestamps get the same offset.
//! - Tag `span.kind` (client, server, producer, consumer, internal; any case) -> kind. Tag
//!   `error` = true or "true" (any case) -> status ERROR; `otel.status_code` = OK/ERROR ->
//!   that status; `otel.status_description` -> the status message when a status is set.
//!   These tags are consumed; tags with other values stay attributes.
//! - Values keep their type; `json_value` holding an array or object becomes an OTLP array or
//!   key-value list (key order kept), any other `json_value` a string.
//! - Log -> event: name = string field `event` (else `log`), other fields -> attributes; a
//!   log without a timestamp takes the span's start.
//! - Baggage (*choice*): OTLP spans have no baggage; each entry becomes a string attribute
//!   `baggage.<key>`, and string attributes with that prefix become baggage on the way back.
//!
//! # OTLP -> Lightstep ([`export_to_reports`])
//! - One `ReportRequest` per `ResourceSpans` with spans; no auth (the pipeline adds the
//!   token), offset 0. Resource attributes -> reporter tags, with `service.name` ->
//!   `lightstep.component_name` (and the three other renames above, in reverse); a renamed
//!   attribute whose Lightstep twin is present with the same value is dropped.
//!   `lightstep.reporter_id` -> `reporter_id`; without it, a hash of the resource.
//! - `trace_id` -> its low 8 bytes; a non-zero upper half is kept in tag `otel.trace_id`
//!   (32 hex digits) so a round trip restores it. Ids of a wrong length are an error.
//! - `parent_span_id` -> `CHILD_OF` reference; links -> `FOLLOWS_FROM` references (or
//!   `CHILD_OF` when marked so by `opentracing.ref_type`).
//! - start/end -> `start_timestamp`, `duration_micros = (end - start) / 1000`.
//! - Attributes -> tags (arrays and maps -> `json_value`, bytes -> base64 string); kind ->
//!   `span.kind`; ERROR -> `error` = true, OK -> `otel.status_code` = "OK", message ->
//!   `otel.status_description`; events -> logs whose first field `event` is the name; the
//!   instrumentation scope's name and version -> tags `otel.scope.name` / `otel.scope.version`.
//!
//! # What a round trip loses (both models cannot hold it)
//! Lightstep -> OTLP -> Lightstep: `auth` and `internal_metrics` (the intake handles them);
//! the offset (already applied to the timestamps); references' baggage; reference trace ids
//! of 0 come back as the span's trace id; a redundant `parent_span_guid` tag; `error`
//! "true" comes back as the bool true and `span.kind` in lower case; a `json_value` comes
//! back compacted, and as a `string_value` when its top level is not an array or object; a
//! log gains the field `event` = `log` when it had none, and that field moves first; special
//! tags move to the end of the tag list and the first `CHILD_OF` reference to the front; a
//! reporter tag named `service.name` (or another OTel twin) with an equal `lightstep.*` twin
//! is dropped, and without one is renamed to it; a report without spans translates to
//! nothing.
//!
//! OTLP -> Lightstep -> OTLP: the instrumentation scope (its name and version come back as
//! attributes), `trace_state`, `flags`, schema URLs, entity refs, every `dropped_*_count`,
//! link attributes other than `opentracing.ref_type`, the status message of an UNSET status,
//! end times below microsecond precision, a link's 128-bit trace id upper half unless it is
//! the span's own trace; bytes values (base64 strings), non-finite doubles inside arrays and
//! maps (null); attributes named like the special tags above (`span.kind`, `error`,
//! `otel.*`, `parent_span_guid`, `baggage.*`) are read as them; the resource gains
//! `lightstep.*` twins and `lightstep.reporter_id`.

mod json;
pub mod lenient;
mod to_lightstep;
mod to_otlp;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;

pub use lenient::{decode_export, decode_report};
pub use to_lightstep::export_to_reports;
pub use to_otlp::report_to_export;

/// Reporter tag <-> resource attribute pairs renamed by translation.
pub const RESOURCE_RENAMES: [(&str, &str); 4] = [
    ("lightstep.component_name", "service.name"),
    ("lightstep.hostname", "host.name"),
    ("lightstep.tracer_platform", "telemetry.sdk.language"),
    ("lightstep.tracer_version", "telemetry.sdk.version"),
];
/// Resource attribute holding a Lightstep `reporter_id`.
pub const REPORTER_ID_ATTRIBUTE: &str = "lightstep.reporter_id";
/// Span tag holding the span kind.
pub const SPAN_KIND_TAG: &str = "span.kind";
/// Span tag marking an error.
pub const ERROR_TAG: &str = "error";
/// Span tag holding an OTLP status code other than ERROR (`OK`).
pub const STATUS_CODE_TAG: &str = "otel.status_code";
/// Span tag holding an OTLP status message.
pub const STATUS_DESCRIPTION_TAG: &str = "otel.status_description";
/// Span tag holding a 128-bit trace id whose upper half is not zero.
pub const TRACE_ID_TAG: &str = "otel.trace_id";
/// Span tag holding the instrumentation scope name.
pub const SCOPE_NAME_TAG: &str = "otel.scope.name";
/// Span tag holding the instrumentation scope version.
pub const SCOPE_VERSION_TAG: &str = "otel.scope.version";
/// Span tag some tracers (Node) use for the parent's span id in hex.
pub const PARENT_SPAN_GUID_TAG: &str = "parent_span_guid";
/// Prefix of the attributes that carry baggage.
pub const BAGGAGE_PREFIX: &str = "baggage.";
/// Link attribute telling which OpenTracing reference a link was.
pub const REF_TYPE_ATTRIBUTE: &str = "opentracing.ref_type";
/// `opentracing.ref_type` of a `CHILD_OF` reference.
pub const REF_TYPE_CHILD_OF: &str = "child_of";
/// `opentracing.ref_type` of a `FOLLOWS_FROM` reference.
pub const REF_TYPE_FOLLOWS_FROM: &str = "follows_from";
/// Log field holding an event's name.
pub const EVENT_FIELD: &str = "event";
/// Event name of a log without an `event` field.
pub const DEFAULT_EVENT_NAME: &str = "log";

/// Why a request could not be translated.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The bytes are not the message, even read leniently.
    #[error("cannot decode {message}: {source}")]
    Decode {
        /// The message expected.
        message: &'static str,
        /// The protobuf error.
        source: prost::DecodeError,
    },
    /// An OTLP id has a length no Lightstep id can come from.
    #[error("invalid {field}: {len} bytes (expected 16 for a trace id, 8 for a span id, or none)")]
    BadId {
        /// Which id.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// The translation would be larger than allowed; refused before it is built.
    #[error(
        "the translated report would take at least {estimate} bytes, over the {limit}-byte limit (max-message-bytes, or {TRANSLATION_EXPANSION}x the report): send smaller reports or fewer, smaller resource attributes and scope names"
    )]
    TooLarge {
        /// Bytes the translation would take (a lower bound).
        estimate: usize,
        /// The limit.
        limit: usize,
    },
}

/// The translation of a report may be at most this many times its size (and never more than
/// `--max-message-bytes`): what is copied per span (scope name, resource) is bounded by it.
pub const TRANSLATION_EXPANSION: usize = 4;

/// Floor of [`output_limit`], so small reports with a few tags always translate.
const TRANSLATION_FLOOR: usize = 64 << 10;

/// Bytes the decoded models may take per byte of the report being translated.
const DECODED_EXPANSION: usize = 16;

/// Refuses, before decoding, a report of `spans` spans in `input_len` bytes whose decoded
/// models (the report's and its translation's) would pass [`DECODED_EXPANSION`] times its
/// size: a report of empty spans is a few bytes per span on the wire and hundreds in memory.
pub fn check_decoded_size(spans: u64, input_len: usize) -> Result<(), TranslateError> {
    let per_span = std::mem::size_of::<crate::proto::collector::Span>()
        + std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::Span>();
    let estimate = usize::try_from(spans)
        .unwrap_or(usize::MAX)
        .saturating_mul(per_span);
    let limit = input_len
        .saturating_mul(DECODED_EXPANSION)
        .max(TRANSLATION_FLOOR);
    if estimate > limit {
        return Err(TranslateError::TooLarge { estimate, limit });
    }
    Ok(())
}

/// The most bytes the translation of an `input_len`-byte report may take.
pub fn output_limit(input_len: usize, max_message_bytes: usize) -> usize {
    input_len
        .saturating_mul(TRANSLATION_EXPANSION)
        .max(TRANSLATION_FLOOR)
        .min(max_message_bytes)
}

/// One translated request, encoded and ready for the target protocol's zero-copy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The encoded request.
    pub body: Bytes,
    /// Spans in it.
    pub spans: u32,
}

/// Decodes an encoded `ReportRequest` leniently and encodes its OTLP translation, its
/// resource split so that no `ResourceSpans` passes `max_resource_bytes` (see
/// [`split_resource_spans`]; `usize::MAX` keeps one).
pub fn report_bytes_to_export(
    body: &[u8],
    max_resource_bytes: usize,
) -> Result<Translated, TranslateError> {
    report_bytes_to_export_within(body, max_resource_bytes, usize::MAX)
}

/// [`report_bytes_to_export`], refused with [`TranslateError::TooLarge`] when the encoded
/// export would pass `limit` bytes (checked as it is split, before each piece is built).
pub fn report_bytes_to_export_within(
    body: &[u8],
    max_resource_bytes: usize,
    limit: usize,
) -> Result<Translated, TranslateError> {
    let report = decode_report(body)?;
    let export = split_within(report_to_export(&report), max_resource_bytes, limit)?;
    Ok(Translated {
        body: Bytes::from(export.encode_to_vec()),
        spans: report.spans.len() as u32,
    })
}

/// Decodes an encoded `ExportTraceServiceRequest` leniently and encodes its Lightstep
/// translation, one `ReportRequest` per resource.
pub fn export_bytes_to_reports(body: &[u8]) -> Result<Vec<Translated>, TranslateError> {
    export_bytes_to_reports_within(body, usize::MAX)
}

/// [`export_bytes_to_reports`], refused with [`TranslateError::TooLarge`] before anything is
/// translated when the reports would pass `limit` bytes (the scope name and version are
/// copied into every span, the resource into every report).
pub fn export_bytes_to_reports_within(
    body: &[u8],
    limit: usize,
) -> Result<Vec<Translated>, TranslateError> {
    let export = decode_export(body)?;
    let estimate = reports_estimate(&export);
    if estimate > limit {
        return Err(TranslateError::TooLarge { estimate, limit });
    }
    Ok(export_to_reports(&export)?
        .into_iter()
        .map(|report| Translated {
            spans: report.spans.len() as u32,
            body: Bytes::from(report.encode_to_vec()),
        })
        .collect())
}

/// A lower bound of the encoded Lightstep reports `export` translates into: its own size,
/// plus the scope name and version once per span and the resource once per report.
fn reports_estimate(export: &ExportTraceServiceRequest) -> usize {
    let mut estimate = export.encoded_len();
    for rs in &export.resource_spans {
        estimate = estimate.saturating_add(rs.resource.as_ref().map_or(0, Message::encoded_len));
        for ss in &rs.scope_spans {
            let per_span = ss
                .scope
                .as_ref()
                .map_or(0, |scope| scope.name.len() + scope.version.len());
            estimate = estimate.saturating_add(per_span.saturating_mul(ss.spans.len()));
        }
    }
    estimate
}

/// Splits each `ResourceSpans` whose encoding is larger than `max_bytes` into several with
/// the same resource and scope, in span order, none larger than `max_bytes` unless a single
/// span is or the resource and scope take more than half of it (then each piece carries at
/// least `max_bytes / 2` of spans, so the resource is copied at most once per half batch).
/// The intake cuts a translated report into runs of at most the batch size this way, as the
/// wire scanner cuts native reports' span runs.
pub fn split_resource_spans(
    export: ExportTraceServiceRequest,
    max_bytes: usize,
) -> ExportTraceServiceRequest {
    match split_within(export, max_bytes, usize::MAX) {
        Ok(export) => export,
        Err(_) => unreachable!("no limit"),
    }
}

/// [`split_resource_spans`], refused when the pieces together would pass `limit` bytes.
fn split_within(
    export: ExportTraceServiceRequest,
    max_bytes: usize,
    limit: usize,
) -> Result<ExportTraceServiceRequest, TranslateError> {
    let mut total = 0usize;
    let mut count = |bytes: usize| {
        total = total.saturating_add(bytes);
        if total > limit {
            Err(TranslateError::TooLarge {
                estimate: total,
                limit,
            })
        } else {
            Ok(())
        }
    };
    let mut out = Vec::with_capacity(export.resource_spans.len());
    for rs in export.resource_spans {
        let len = rs.encoded_len();
        if len <= max_bytes {
            count(len)?;
            out.push(rs);
            continue;
        }
        let shell = ResourceSpans {
            resource: rs.resource.clone(),
            scope_spans: Vec::new(),
            schema_url: rs.schema_url.clone(),
        };
        for ss in rs.scope_spans {
            let scope = ScopeSpans {
                scope: ss.scope.clone(),
                spans: Vec::new(),
                schema_url: ss.schema_url.clone(),
            };
            // Room for spans: what is left after the resource, the scope and their framing.
            let overhead = shell.encoded_len() + scope.encoded_len() + 20;
            let room = max_bytes.saturating_sub(overhead).max(max_bytes / 2);
            let mut piece = scope.clone();
            let mut used = 0;
            count(overhead)?;
            for span in ss.spans {
                let len = span.encoded_len() + 1 + prost::length_delimiter_len(span.encoded_len());
                if used + len > room && !piece.spans.is_empty() {
                    // The next piece repeats the resource and scope: pay for them first.
                    count(overhead)?;
                    let full = std::mem::replace(&mut piece, scope.clone());
                    out.push(ResourceSpans {
                        scope_spans: vec![full],
                        ..shell.clone()
                    });
                    used = 0;
                }
                count(len)?;
                used += len;
                piece.spans.push(span);
            }
            if !piece.spans.is_empty() {
                out.push(ResourceSpans {
                    scope_spans: vec![piece],
                    ..shell.clone()
                });
            }
        }
    }
    Ok(ExportTraceServiceRequest {
        resource_spans: out,
    })
}

/// The OTLP span kind of a `span.kind` tag value.
fn kind_from_tag(value: &str) -> Option<i32> {
    const KINDS: [(&str, i32); 5] = [
        ("internal", 1),
        ("server", 2),
        ("client", 3),
        ("producer", 4),
        ("consumer", 5),
    ];
    KINDS
        .iter()
        .find(|(name, _)| value.eq_ignore_ascii_case(name))
        .map(|(_, kind)| *kind)
}

/// The `span.kind` tag value of an OTLP span kind (none for UNSPECIFIED or unknown).
fn kind_to_tag(kind: i32) -> Option<&'static str> {
    Some(match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
