//! Lightstep gRPC: `lightstep.collector.CollectorService/Report`, taken as raw bytes by the
//! shared server in `ingest/grpc.rs`.

use std::time::SystemTime;

use bytes::Bytes;
use tonic::metadata::MetadataMap;

use crate::ingest::auth;
use crate::ingest::grpc::IngestMethod;
use crate::ingest::intake::Intake;
use crate::ingest::refused::Refused;
use crate::pipeline::{Charge, Protocol};
use crate::proto::collector::ReportResponse;

/// `lightstep.collector.CollectorService/Report`.
pub struct Report;

impl IngestMethod for Report {
    const PROTOCOL: Protocol = Protocol::Lightstep;
    type Reply = ReportResponse;

    fn handle(
        intake: &Intake,
        body: Bytes,
        metadata: &MetadataMap,
        received: SystemTime,
        charge: Charge,
    ) -> Result<ReportResponse, Refused> {
        intake.lightstep_report(body, auth::header_token_metadata(metadata), charge)?;
        Ok(report_response(received))
    }
}

/// An accepted report's answer: timestamps for the tracers' clock filter, no `errors` text.
pub fn report_response(received: SystemTime) -> ReportResponse {
    ReportResponse {
        receive_timestamp: Some(received.into()),
        transmit_timestamp: Some(SystemTime::now().into()),
        ..Default::default()
    }
}
