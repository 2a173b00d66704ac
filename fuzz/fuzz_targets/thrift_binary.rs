//! The Thrift binary `Report` call (`/_rpc/v1/reports/binary`, the Python tracer's
//! `use_thrift=True`): the call read, converted to a protobuf `ReportRequest` and replied to
//! (`ingest::parse_thrift_binary`), then the wire scanner the intake runs. Never a panic, never
//! an allocation larger than the input allows; a converted report scans with every span.

#![no_main]

use bytes::Bytes;
use cubesat::ingest::parse_thrift_binary;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok((request, reply)) = parse_thrift_binary(data) else {
        return;
    };
    assert!(!reply.is_empty());
    let scan = scan_report(&Bytes::from(request.encode_to_vec()), usize::MAX)
        .expect("a converted report scans");
    assert_eq!(scan.spans.count as usize, request.spans.len());
});
