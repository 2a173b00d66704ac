//! proto3 JSON of a Lightstep `ReportRequest` (`POST /api/v2/reports` with
//! `Content-Type: application/json`): `json_to_protobuf`, then the wire scanner, as the route
//! does. Never a panic; what the JSON route encodes always scans.

#![no_main]

use cubesat::ingest::http::lightstep::json_to_protobuf;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = json_to_protobuf(data) else {
        return;
    };
    scan_report(&body, usize::MAX).expect("what the JSON route encodes scans");
});
