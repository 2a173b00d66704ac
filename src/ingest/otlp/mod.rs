//! OTLP traces ingest, one file per transport: gRPC `TraceService/Export` and OTLP/HTTP
//! `/v1/traces` (protobuf or JSON, the JSON read by `json`). Both hand the raw protobuf
//! request to the intake.

pub mod grpc;
pub mod http;
pub mod json;

pub use grpc::Export;

use bytes::Bytes;

use super::refused::Refused;

/// OTLP/JSON of an `ExportTraceServiceRequest` -> its protobuf encoding, as `/v1/traces`
/// converts `application/json`.
pub fn parse_otlp_json(body: &[u8]) -> Result<Bytes, Refused> {
    Ok(json::json_to_protobuf(body)?)
}
