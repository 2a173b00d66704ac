//! Lenient decoding: reports whose strings are not UTF-8 still translate.
//!
//! A strict prost decode refuses a `string` field holding invalid UTF-8, which real tracers
//! send. The zero-copy path never looks inside strings, so translation must not be stricter
//! than it: each decode first tries the strict types and, only if that fails, decodes with the
//! lenient twins of `crate::proto::lenient` (strings as bytes) and repairs every string with
//! U+FFFD replacement characters. The fast path pays nothing for the fallback.
//!
//! Both schemas are covered: the Lightstep `ReportRequest` and OTLP's
//! `ExportTraceServiceRequest` (decoded as its wire twin `TracesData`). Only the fields that
//! translation reads are carried over from the lenient types.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use prost::Message;

use super::TranslateError;
use crate::proto::collector as ls;
use crate::proto::lenient::lightstep::collector as lls;
use crate::proto::lenient::opentelemetry::proto as lotlp;

fn text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// Decodes a Lightstep `ReportRequest`, repairing non-UTF-8 strings.
pub fn decode_report(body: &[u8]) -> Result<ls::ReportRequest, TranslateError> {
    if let Ok(report) = ls::ReportRequest::decode(body) {
        return Ok(report);
    }
    let report = lls::ReportRequest::decode(body).map_err(|source| TranslateError::Decode {
        message: "ReportRequest",
        source,
    })?;
    Ok(ls::ReportRequest {
        reporter: report.reporter.map(|r| ls::Reporter {
            reporter_id: r.reporter_id,
            tags: r.tags.into_iter().map(ls_key_value).collect(),
        }),
        auth: report.auth.map(|a| ls::Auth {
            access_token: text(a.access_token),
        }),
        spans: report.spans.into_iter().map(ls_span).collect(),
        timestamp_offset_micros: report.timestamp_offset_micros,
        // Translation does not carry internal metrics; the intake counted them already.
        internal_metrics: None,
    })
}

fn ls_key_value(kv: lls::KeyValue) -> ls::KeyValue {
    use lls::key_value::Value as L;
    use ls::key_value::Value as S;
    ls::KeyValue {
        key: text(kv.key),
        value: kv.value.map(|v| match v {
            L::StringValue(s) => S::StringValue(text(s)),
            L::IntValue(i) => S::IntValue(i),
            L::DoubleValue(d) => S::DoubleValue(d),
            L::BoolValue(b) => S::BoolValue(b),
            L::JsonValue(s) => S::JsonValue(text(s)),
        }),
    }
}

fn ls_context(context: lls::SpanContext) -> ls::SpanContext {
    ls::SpanContext {
        trace_id: context.trace_id,
        span_id: context.span_id,
        baggage: context
            .baggage
            .into_iter()
            .map(|e| (text(e.key), text(e.value)))
            .collect::<HashMap<_, _>>(),
    }
}

fn ls_span(span: lls::Span) -> ls::Span {
    ls::Span {
        span_context: span.span_context.map(ls_context),
        operation_name: text(span.operation_name),
        references: span
            .references
            .into_iter()
            .map(|r| ls::Reference {
                relationship: r.relationship,
                span_context: r.span_context.map(ls_context),
            })
            .collect(),
        start_timestamp: span.start_timestamp,
        duration_micros: span.duration_micros,
        tags: span.tags.into_iter().map(ls_key_value).collect(),
        logs: span
            .logs
            .into_iter()
            .map(|l| ls::Log {
                timestamp: l.timestamp,
                fields: l.fields.into_iter().map(ls_key_value).collect(),
            })
            .collect(),
    }
}

/// Decodes an OTLP `ExportTraceServiceRequest`, repairing non-UTF-8 strings.
pub fn decode_export(body: &[u8]) -> Result<ExportTraceServiceRequest, TranslateError> {
    if let Ok(export) = ExportTraceServiceRequest::decode(body) {
        return Ok(export);
    }
    let data =
        lotlp::trace::v1::TracesData::decode(body).map_err(|source| TranslateError::Decode {
            message: "ExportTraceServiceRequest",
            source,
        })?;
    Ok(ExportTraceServiceRequest {
        resource_spans: data
            .resource_spans
            .into_iter()
            .map(|rs| trace::ResourceSpans {
                resource: rs.resource.map(|r| Resource {
                    attributes: key_values(r.attributes),
                    dropped_attributes_count: r.dropped_attributes_count,
                    entity_refs: Vec::new(),
                }),
                scope_spans: rs
                    .scope_spans
                    .into_iter()
                    .map(|ss| trace::ScopeSpans {
                        scope: ss.scope.map(|s| common::InstrumentationScope {
                            name: text(s.name),
                            version: text(s.version),
                            attributes: key_values(s.attributes),
                            dropped_attributes_count: s.dropped_attributes_count,
                        }),
                        spans: ss.spans.into_iter().map(otlp_span).collect(),
                        schema_url: text(ss.schema_url),
                    })
                    .collect(),
                schema_url: text(rs.schema_url),
            })
            .collect(),
    })
}

fn key_values(list: Vec<lotlp::common::v1::KeyValue>) -> Vec<common::KeyValue> {
    list.into_iter()
        .map(|kv| common::KeyValue {
            key: text(kv.key),
            value: kv.value.map(any_value),
            ..Default::default()
        })
        .collect()
}

fn any_value(value: lotlp::common::v1::AnyValue) -> common::AnyValue {
    use common::any_value::Value as S;
    use lotlp::common::v1::any_value::Value as L;
    common::AnyValue {
        value: value.value.map(|v| match v {
            L::StringValue(s) => S::StringValue(text(s)),
            L::BoolValue(b) => S::BoolValue(b),
            L::IntValue(i) => S::IntValue(i),
            L::DoubleValue(d) => S::DoubleValue(d),
            L::ArrayValue(a) => S::ArrayValue(common::ArrayValue {
                values: a.values.into_iter().map(any_value).collect(),
            }),
            L::KvlistValue(l) => S::KvlistValue(common::KeyValueList {
                values: key_values(l.values),
            }),
            L::BytesValue(b) => S::BytesValue(b),
            L::StringValueStrindex(i) => S::StringValueStrindex(i),
        }),
    }
}

fn otlp_span(span: lotlp::trace::v1::Span) -> trace::Span {
    trace::Span {
        trace_id: span.trace_id,
        span_id: span.span_id,
        trace_state: text(span.trace_state),
        parent_span_id: span.parent_span_id,
        flags: span.flags,
        name: text(span.name),
        kind: span.kind,
        start_time_unix_nano: span.start_time_unix_nano,
        end_time_unix_nano: span.end_time_unix_nano,
        attributes: key_values(span.attributes),
        dropped_attributes_count: span.dropped_attributes_count,
        events: span
            .events
            .into_iter()
            .map(|e| trace::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: text(e.name),
                attributes: key_values(e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: span.dropped_events_count,
        links: span
            .links
            .into_iter()
            .map(|l| trace::span::Link {
                trace_id: l.trace_id,
                span_id: l.span_id,
                trace_state: text(l.trace_state),
                attributes: key_values(l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: span.dropped_links_count,
        status: span.status.map(|s| trace::Status {
            message: text(s.message),
            code: s.code,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_with_invalid_utf8_decodes_with_replacement() {
        let good = ls::ReportRequest {
            spans: vec![ls::Span {
                operation_name: "op-\u{7f}".into(),
                tags: vec![ls::KeyValue {
                    key: "k".into(),
                    value: Some(ls::key_value::Value::StringValue("v\u{7f}".into())),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut bytes = good.encode_to_vec();
        for b in &mut bytes {
            if *b == 0x7f {
                *b = 0xff;
            }
        }
        assert!(ls::ReportRequest::decode(&bytes[..]).is_err());
        let report = decode_report(&bytes).unwrap();
        assert_eq!(report.spans[0].operation_name, "op-\u{fffd}");
        assert_eq!(
            report.spans[0].tags[0].value,
            Some(ls::key_value::Value::StringValue("v\u{fffd}".into()))
        );
    }

    #[test]
    fn export_with_invalid_utf8_decodes_with_replacement() {
        let good = ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![trace::ScopeSpans {
                    spans: vec![trace::Span {
                        name: "n\u{7f}".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut bytes = good.encode_to_vec();
        let at = bytes.iter().position(|b| *b == 0x7f).unwrap();
        bytes[at] = 0xc3; // A lone UTF-8 lead byte.
        assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
        let export = decode_export(&bytes).unwrap();
        assert_eq!(
            export.resource_spans[0].scope_spans[0].spans[0].name,
            "n\u{fffd}"
        );
    }

    #[test]
    fn broken_framing_is_an_error() {
        assert!(matches!(
            decode_report(&[0x1a, 0x05, 0x00]),
            Err(TranslateError::Decode { .. })
        ));
        assert!(matches!(
            decode_export(&[0x0a, 0x09]),
            Err(TranslateError::Decode { .. })
        ));
    }
}
