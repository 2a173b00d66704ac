//! Lightstep ingest, one file per transport: gRPC `CollectorService/Report`, HTTP
//! `/api/v2/reports` (protobuf or JSON), the C++ tracer's streamed upload, and Thrift.
//! Each hands a `ReportRequest` to the intake.

pub mod grpc;
pub mod http;
pub mod stream;
pub mod thrift;

pub use grpc::Report;
