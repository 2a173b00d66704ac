//! The OTLP `ExportTraceServiceRequest` wire scanner (`wire::otlp::scan_export`), which every
//! OTLP/gRPC and OTLP/HTTP protobuf export meets: arbitrary bytes are a scan or an error,
//! never a panic, and a scan's runs are whole `resource_spans` fields that scan again alike.

#![no_main]

use bytes::Bytes;
use cubesat::wire::otlp::scan_export;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    // A small run limit too, so that run cutting is exercised on small inputs.
    for max_run_bytes in [usize::MAX, 64] {
        let Ok(spans) = scan_export(&buf, max_run_bytes) else {
            continue;
        };
        assert_eq!(
            spans.runs.iter().map(Bytes::len).sum::<usize>(),
            spans.bytes
        );
        assert!(spans.bytes <= buf.len());
        assert!(spans.runs.iter().all(|run| !run.is_empty()));
        // The runs alone are an export holding the same spans (this is what a batch is).
        let runs = Bytes::from(spans.runs.concat());
        let again = scan_export(&runs, usize::MAX).expect("the runs of a scan scan again");
        assert_eq!(again.count, spans.count);
        assert_eq!(again.bytes, spans.bytes);
    }
});
