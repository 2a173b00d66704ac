//! The Thrift binary `Report` call (`/_rpc/v1/reports/binary`, the Python tracer's
//! `use_thrift=True`): `read_call`, then the conversion to a protobuf `ReportRequest`, then
//! the wire scanner that conversion feeds, as the route does. Never a panic, never an
//! allocation larger than the input allows; a converted report always scans.

#![no_main]

use bytes::Bytes;
use cubesat::ingest::thrift::{binary, to_report_request};
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(call) = binary::read_call(data) else {
        return;
    };
    let spans = call.report.span_records.as_ref().map_or(0, Vec::len);
    let Ok(request) = to_report_request(call.report, call.access_token) else {
        return;
    };
    assert_eq!(request.spans.len(), spans);
    let scan = scan_report(&Bytes::from(request.encode_to_vec()), usize::MAX)
        .expect("a converted report scans");
    assert_eq!(scan.spans.count as usize, spans);
    let _ = binary::write_reply(&call.name, call.seqid, 1, 2).expect("a reply to a read call");
});
