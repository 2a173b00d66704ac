//! The Lightstep `ReportRequest` wire scanner (`wire::report::scan_report`), the first thing
//! every gRPC and HTTP protobuf report meets: arbitrary bytes are a scan or an error, never a
//! panic, and a scan's span runs are whole span fields that add up and scan again alike.

#![no_main]

use bytes::Bytes;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    // A small run limit too, so that run cutting is exercised on small inputs.
    for max_run_bytes in [usize::MAX, 64] {
        let Ok(scan) = scan_report(&buf, max_run_bytes) else {
            continue;
        };
        let spans = &scan.spans;
        assert_eq!(
            spans.runs.iter().map(Bytes::len).sum::<usize>(),
            spans.bytes
        );
        assert!(spans.bytes <= buf.len());
        // Each span field is at least its tag and a length byte.
        assert!(spans.count as usize * 2 <= spans.bytes);
        // The runs alone are a report holding the same spans (this is what a batch is).
        let runs = Bytes::from(spans.runs.concat());
        let again = scan_report(&runs, usize::MAX).expect("the span runs of a scan scan again");
        assert_eq!(again.spans.count, spans.count);
        assert_eq!(again.spans.bytes, spans.bytes);
    }
});
