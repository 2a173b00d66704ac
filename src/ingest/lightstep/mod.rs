//! Lightstep ingest, one file per transport: gRPC `CollectorService/Report`, HTTP
//! `/api/v2/reports` (protobuf or JSON), the C++ tracer's streamed upload, and Thrift.

pub mod stream;
pub mod thrift;
