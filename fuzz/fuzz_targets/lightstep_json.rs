//! proto3 JSON of a Lightstep `ReportRequest` (`POST /api/v2/reports` with
//! `Content-Type: application/json`): `ingest::parse_lightstep_json`, then the wire scanner
//! the intake runs. Never a panic; what the JSON route encodes always scans.

#![no_main]

use cubesat::ingest::parse_lightstep_json;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_lightstep_json(data) else {
        return;
    };
    scan_report(&body, usize::MAX).expect("what the JSON route encodes scans");
});
