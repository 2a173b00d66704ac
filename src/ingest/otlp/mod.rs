//! OTLP traces ingest, one file per transport: gRPC `TraceService/Export` and OTLP/HTTP
//! `/v1/traces` (protobuf or JSON). Both hand the raw protobuf request to the intake.

pub mod grpc;
pub mod http;

pub use grpc::Export;
