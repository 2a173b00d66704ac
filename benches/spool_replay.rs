//! Spool replay throughput: how fast records waiting on disk (spilled during an outage, or
//! left by the last run) are read back into the pipeline once the upstream returns.
//!
//! Each iteration writes `RECORDS` spilled records of `SPANS` spans into a fresh spool under
//! `target/` (not timed), then times the replay task reading them all back through a ring to
//! a shard receiver that acknowledges them in batches of 64, as delivered batches do. The
//! segment files were just written, so reads come from the page cache: this measures the
//! replay's own cost, not the disk. Run with
//! `cargo bench --bench spool_replay -- --warm-up-time 1 --measurement-time 5`; results are in
//! BENCHMARKS.md.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use tokio_util::sync::CancellationToken;

use cubesat::pipeline::{BatchKey, Protocol, Ring, RingConfig, Spool, SpoolConfig, Spooled};
use cubesat::wire::report::SpanRuns;

/// Records per iteration.
const RECORDS: usize = 4000;
/// Reports acknowledged together, as one delivered batch.
const ACK_EVERY: usize = 64;

fn key() -> BatchKey {
    BatchKey {
        protocol: Protocol::Lightstep,
        token: Bytes::from_static(b"bench-token"),
        reporter: Bytes::from_static(b"\x08\x01\x12\x0creviews.bench"),
        timestamp_offset_micros: 0,
    }
}

/// A report of `spans` spans of `span_bytes` bytes each.
fn spans(spans: usize, span_bytes: usize) -> SpanRuns {
    let runs: Vec<Bytes> = (0..spans)
        .map(|i| Bytes::from(vec![i as u8; span_bytes]))
        .collect();
    SpanRuns {
        count: spans as u32,
        bytes: spans * span_bytes,
        runs,
    }
}

/// Writes `RECORDS` spilled records into a fresh spool, then times their replay.
async fn replay_once(report: &SpanRuns) -> Duration {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("spool directory");
    let (spool, _) = Spool::open(&SpoolConfig {
        dir: dir.path().to_owned(),
        limit_bytes: 1 << 30,
    })
    .expect("spool in target/");
    let key = key();
    for _ in 0..RECORDS {
        spool.write(&key, report, false).expect("room");
    }
    let (ring, mut shards) = Ring::without_arena(RingConfig {
        capacity_bytes: 256 << 20,
        high_water: 0.8,
        low_water: 0.6,
        shards: 1,
    });
    let ring = ring.with_spool(spool.clone());
    let mut shard = shards.remove(0);
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(spool.clone().replay(ring, stop.clone()));
    let mut batch = Spooled::default();
    for received in 1..=RECORDS {
        let mut report = shard.recv().await.expect("replayed");
        batch.absorb(std::mem::take(&mut report.spooled));
        if received % ACK_EVERY == 0 {
            drop(std::mem::take(&mut batch));
        }
    }
    drop(batch);
    let took = started.elapsed();
    stop.cancel();
    let _ = task.await;
    assert_eq!(spool.status().records, 0, "every record acknowledged");
    took
}

fn spool_replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("spool_replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, report) in [
        ("records_10_spans_2KiB", spans(10, 200)),
        ("records_100_spans_20KiB", spans(100, 200)),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| runtime.block_on(replay_once(&report)))
                    .sum()
            })
        });
    }
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    spool_replay(&mut criterion);
    criterion.final_summary();
}
