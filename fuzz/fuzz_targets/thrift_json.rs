//! The Thrift JSON report (`/api/v0/reports`, the JS and Ruby tracers): parsed and converted to
//! a protobuf `ReportRequest` (`ingest::parse_thrift_json`), then the wire scanner the intake
//! runs. Never a panic; a converted report scans with every span.

#![no_main]

use bytes::Bytes;
use cubesat::ingest::parse_thrift_json;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = parse_thrift_json(data) else {
        return;
    };
    let scan = scan_report(&Bytes::from(request.encode_to_vec()), usize::MAX)
        .expect("a converted report scans");
    assert_eq!(scan.spans.count as usize, request.spans.len());
});
