//! The Thrift JSON report (`/api/v0/reports`, the JS and Ruby tracers): `parse_json`, then the
//! conversion to a protobuf `ReportRequest`, then the wire scanner, as the route does. Never a
//! panic; a converted report always scans with every span.

#![no_main]

use bytes::Bytes;
use cubesat::ingest::thrift::{parse_json, to_report_request};
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = parse_json(data) else {
        return;
    };
    let spans = report.span_records.as_ref().map_or(0, Vec::len);
    let Ok(request) = to_report_request(report, Some("token".into())) else {
        return;
    };
    assert_eq!(request.spans.len(), spans);
    let scan = scan_report(&Bytes::from(request.encode_to_vec()), usize::MAX)
        .expect("a converted report scans");
    assert_eq!(scan.spans.count as usize, spans);
});
