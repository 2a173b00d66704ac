//! The lenient Lightstep decode and its OTLP translation (`translate::report_bytes_to_export`,
//! used when `--upstream-protocol otlp` meets a Lightstep report): never a panic, and a
//! translation is an export the OTLP scanner and a strict protobuf decode both accept, with
//! every span.

#![no_main]

use cubesat::translate::report_bytes_to_export;
use cubesat::wire::otlp::scan_export;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // A small resource limit too, so that resource splitting is exercised on small inputs.
    for max_resource_bytes in [usize::MAX, 256] {
        let Ok(translated) = report_bytes_to_export(data, max_resource_bytes) else {
            return;
        };
        let runs = scan_export(&translated.body, usize::MAX).expect("a translation scans");
        assert_eq!(runs.count, translated.spans);
        ExportTraceServiceRequest::decode(translated.body.as_ref())
            .expect("a translation decodes strictly");
    }
});
