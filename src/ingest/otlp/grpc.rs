//! OTLP gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
//!
//! The token comes only from the `lightstep-access-token` metadata, as Istio's `lightstep`
//! provider and the OTel SDKs send it. Requests go to the intake as raw bytes.

use std::time::SystemTime;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tonic::metadata::MetadataMap;

use crate::ingest::auth;
use crate::ingest::grpc::IngestMethod;
use crate::ingest::intake::Intake;
use crate::ingest::refused::Refused;
use crate::pipeline::{Charge, Protocol};

/// `TraceService/Export`.
pub struct Export;

impl IngestMethod for Export {
    const PROTOCOL: Protocol = Protocol::Otlp;
    type Reply = ExportTraceServiceResponse;

    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        _received: SystemTime,
        charge: Charge,
    ) -> Result<ExportTraceServiceResponse, Refused> {
        intake.otlp_export(body, auth::header_token_metadata(metadata), charge)?;
        // Full success: `partial_success` stays unset, as the OTLP specification asks.
        Ok(ExportTraceServiceResponse::default())
    }
}
