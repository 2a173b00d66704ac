//! The lenient OTLP decode and its Lightstep translation (`translate::export_bytes_to_reports`,
//! used when `--upstream-protocol lightstep` meets an OTLP export): never a panic, and each
//! translated report is one the Lightstep scanner and a strict protobuf decode both accept,
//! with every span.

#![no_main]

use cubesat::proto::collector::ReportRequest;
use cubesat::translate::export_bytes_to_reports;
use cubesat::wire::report::scan_report;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(reports) = export_bytes_to_reports(data) else {
        return;
    };
    for report in reports {
        let scan = scan_report(&report.body, usize::MAX).expect("a translation scans");
        assert_eq!(scan.spans.count, report.spans);
        ReportRequest::decode(report.body.as_ref()).expect("a translation decodes strictly");
    }
});
