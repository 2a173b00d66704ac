//! Lightstep ingest, one file per transport: gRPC `CollectorService/Report`, HTTP
//! `/api/v2/reports` (protobuf or JSON), the C++ tracer's streamed upload, and Thrift.
//! Each hands a `ReportRequest` to the intake.

pub mod grpc;
pub mod http;
pub mod stream;
pub mod thrift;

pub use grpc::Report;

use bytes::Bytes;

use super::{Intake, Refused};
use crate::proto::collector as pb;

// What each route does to a request body before the intake, without the network around it:
// the parsers' entry points for the fuzz targets in `fuzz/` (see RELIABILITY.md).

/// A Thrift JSON report -> `ReportRequest`, as `/api/v0/reports` converts it.
pub fn parse_thrift_json(body: &[u8]) -> Result<pb::ReportRequest, Refused> {
    let mut meter = thrift::meter::ModelMeter::new(body.len());
    thrift::model_parse_json(body, &mut meter)
        .and_then(|report| thrift::to_report_request(report, None))
        .map_err(Refused::bad_request)
}

/// A Thrift binary `Report` call -> the `ReportRequest` (with the call's token) and the
/// encoded reply, as `/_rpc/v1/reports/binary` handles it.
pub fn parse_thrift_binary(body: &[u8]) -> Result<(pb::ReportRequest, Vec<u8>), Refused> {
    let mut meter = thrift::meter::ModelMeter::new(body.len());
    let call = thrift::binary::read_call_metered(body, &mut meter).map_err(Refused::bad_request)?;
    let request =
        thrift::to_report_request(call.report, call.access_token).map_err(Refused::bad_request)?;
    let reply =
        thrift::binary::write_reply(&call.name, call.seqid, 0, 0).map_err(Refused::bad_request)?;
    Ok((request, reply))
}

/// proto3 JSON of a `ReportRequest` -> its protobuf encoding, as `/api/v2/reports` converts
/// `application/json`.
pub fn parse_lightstep_json(body: &[u8]) -> Result<Bytes, Refused> {
    Ok(http::json_to_protobuf(body)?)
}

/// Reads a C++ tracer's streamed upload into `intake` as `/api/v2/reports` does with a
/// chunked protobuf body; `max_field` is `--max-message-bytes`.
pub async fn read_lightstep_stream(
    intake: &Intake,
    body: axum::body::Body,
    max_field: usize,
) -> Result<(), Refused> {
    Ok(stream::upload(intake, None, body, max_field).await?)
}
