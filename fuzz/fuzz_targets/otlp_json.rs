//! OTLP/JSON of an `ExportTraceServiceRequest` (`POST /v1/traces` with
//! `Content-Type: application/json`): `ingest::parse_otlp_json`, then the wire scanner the
//! intake runs. Never a panic; what the JSON route encodes is well-formed protobuf, so the
//! scanner can refuse it only for an id of the wrong length (JSON hex of any length decodes).

#![no_main]

use cubesat::ingest::parse_otlp_json;
use cubesat::wire::otlp::{OtlpError, scan_export};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = parse_otlp_json(data) else {
        return;
    };
    match scan_export(&body, usize::MAX) {
        Ok(_) | Err(OtlpError::BadId { .. }) => {}
        Err(other) => panic!("what the JSON route encodes is well-formed: {other}"),
    }
});
