//! The C++ tracer's streamed upload (`ingest::read_lightstep_stream`): a `ReportRequest` arriving as
//! a chunked body whose chunk boundaries fall anywhere. Input: byte 0 is the chunk length
//! (0: one chunk), bit 0 of byte 1 cuts the stream off with an error instead of ending it,
//! the rest is the body. Never a panic; and an uncut stream of a report the whole-body scanner
//! accepts delivers exactly the spans that scanner finds, however it is chunked.

#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use cubesat::ingest::auth::TokenPolicy;
use cubesat::ingest::{Intake, read_lightstep_stream};
use cubesat::pipeline::{Ring, RingConfig};
use cubesat::wire::report::scan_report;
use http_body::Frame;
use http_body_util::StreamBody;
use libfuzzer_sys::fuzz_target;

/// The largest field a stream may hold back, as `--max-message-bytes` sets it.
const MAX_FIELD: usize = 4096;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}

impl std::error::Error for Cut {}

fuzz_target!(|data: &[u8]| {
    let [chunk, flags, body @ ..] = data else {
        return;
    };
    let cut = flags & 1 == 1;
    let chunk = if *chunk == 0 {
        body.len().max(1)
    } else {
        usize::from(*chunk)
    };
    let mut frames: Vec<Result<Frame<Bytes>, Cut>> = body
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    if cut {
        frames.push(Err(Cut));
    }
    let body_stream = axum::body::Body::new(StreamBody::new(futures_util::stream::iter(frames)));

    let (ring, mut receivers) = Ring::new(RingConfig {
        capacity_bytes: 1 << 30,
        high_water: 0.9,
        low_water: 0.5,
        shards: 1,
    })
    .expect("the ring's region");
    let intake = Intake::new(ring, TokenPolicy::default(), 1 << 20);
    let result = RUNTIME.block_on(read_lightstep_stream(&intake, body_stream, MAX_FIELD));
    let mut delivered = 0;
    while let Ok(report) = receivers[0].try_recv() {
        delivered += report.spans.count;
    }

    if cut {
        assert!(result.is_err(), "a cut stream is an error");
        return;
    }
    let whole = scan_report(&Bytes::copy_from_slice(body), usize::MAX);
    match (&result, &whole) {
        (Ok(()), Ok(scan)) => assert_eq!(delivered, scan.spans.count),
        (Ok(()), Err(error)) => panic!("the stream took what the scanner refuses: {error}"),
        // The limit is on one field; a body under it holds no field over it. A report whose
        // own token fails the token policy is refused by the intake, not by the scanner.
        (Err(error), Ok(scan))
            if body.len() <= MAX_FIELD
                && TokenPolicy::default()
                    .resolve(scan.access_token.as_ref(), None)
                    .is_ok() =>
        {
            panic!("the scanner takes what the stream refused: {error}")
        }
        _ => {}
    }
});
