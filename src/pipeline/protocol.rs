//! [`Protocol`]: everything that differs between the protocols cubesat forwards as raw bytes,
//! in one place: the gRPC service and path, the metric label, how a batch's leading fields
//! are written, and how many spans an upstream's success reply still rejected.
//!
//! The pipeline itself never speaks gRPC; the names here are read by ingest (to serve) and
//! forward (to send). Adding a protocol starts with a variant here; the compiler then lists
//! every match that needs its entry.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tracing::{debug, warn};

use super::BatchKey;
use crate::proto::collector::ReportResponse;
use crate::wire::report::report_header;

/// Header (and gRPC metadata) carrying the access token, in both directions; HTTP header
/// names match in any case.
pub const TOKEN_HEADER: &str = "lightstep-access-token";

/// The protocol a report arrived in and a batch is written in upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Lightstep collector `ReportRequest`.
    Lightstep,
    /// OTLP `ExportTraceServiceRequest`.
    Otlp,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 2] = [Protocol::Lightstep, Protocol::Otlp];

    /// The metrics label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Lightstep => "lightstep",
            Protocol::Otlp => "otlp",
        }
    }

    /// The fully-qualified gRPC service name.
    pub const fn service(self) -> &'static str {
        match self {
            Protocol::Lightstep => "lightstep.collector.CollectorService",
            Protocol::Otlp => "opentelemetry.proto.collector.trace.v1.TraceService",
        }
    }

    /// The path of the unary method that takes a request, `/<service>/<method>`.
    pub const fn grpc_path(self) -> &'static str {
        match self {
            Protocol::Lightstep => "/lightstep.collector.CollectorService/Report",
            Protocol::Otlp => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        }
    }

    /// The protocol translation goes to when this one is not the upstream's.
    pub const fn other(self) -> Protocol {
        match self {
            Protocol::Lightstep => Protocol::Otlp,
            Protocol::Otlp => Protocol::Lightstep,
        }
    }

    /// The encoded fields that open a batch of `key`, before its span runs.
    pub fn batch_header(self, key: &BatchKey) -> Bytes {
        match self {
            Protocol::Lightstep => {
                report_header(&key.reporter, &key.token, key.timestamp_offset_micros)
            }
            // Each run is whole `resource_spans` fields: the request needs no header.
            Protocol::Otlp => Bytes::new(),
        }
    }

    /// Spans of a `spans`-span batch that the upstream refused in a success `reply`
    /// (logged here; counted as dropped by the caller).
    pub fn rejected_spans(self, reply: Bytes, spans: u64) -> u64 {
        match self {
            Protocol::Lightstep => match ReportResponse::decode(reply) {
                Ok(reply) if !reply.errors.is_empty() => {
                    warn!(errors = ?reply.errors, spans, "upstream accepted a batch with errors");
                    0
                }
                Ok(_) => 0,
                Err(error) => {
                    debug!(%error, "upstream sent an unreadable ReportResponse");
                    0
                }
            },
            Protocol::Otlp => match ExportTraceServiceResponse::decode(reply) {
                Ok(ExportTraceServiceResponse {
                    partial_success: Some(partial),
                }) if partial.rejected_spans > 0 => {
                    warn!(rejected = partial.rejected_spans, message = %partial.error_message, "upstream rejected part of a batch");
                    u64::try_from(partial.rejected_spans).map_or(0, |n| n.min(spans))
                }
                Ok(_) => 0,
                Err(error) => {
                    debug!(%error, "upstream sent an unreadable ExportTraceServiceResponse");
                    0
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    use super::*;

    #[test]
    fn paths_name_their_service() {
        for protocol in Protocol::ALL {
            assert!(
                protocol
                    .grpc_path()
                    .starts_with(&format!("/{}/", protocol.service()))
            );
            assert_eq!(protocol.other().other(), protocol);
        }
    }

    #[test]
    fn a_partial_success_rejects_at_most_the_batch() {
        let reply = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 9,
                error_message: "no".into(),
            }),
        };
        let reply = Bytes::from(reply.encode_to_vec());
        assert_eq!(Protocol::Otlp.rejected_spans(reply.clone(), 4), 4);
        assert_eq!(Protocol::Otlp.rejected_spans(reply, 20), 9);
        assert_eq!(Protocol::Lightstep.rejected_spans(Bytes::new(), 3), 0);
    }
}
