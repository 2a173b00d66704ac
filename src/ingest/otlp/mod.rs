//! OTLP traces ingest, one file per transport: gRPC `TraceService/Export` and OTLP/HTTP
//! `/v1/traces` (protobuf or JSON, the JSON read by `json`). Both hand the raw protobuf
//! request to the intake.

pub mod grpc;
pub mod http;
pub mod json;

pub use grpc::Export;
