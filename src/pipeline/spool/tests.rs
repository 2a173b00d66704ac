//! Unit tests of the spool: acknowledgement and segment deletion, restart, spill and replay,
//! the byte limit.

use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::pipeline::{Protocol, Report, Ring, RingConfig};

fn key(token: &'static [u8]) -> BatchKey {
    BatchKey {
        protocol: Protocol::Lightstep,
        token: Bytes::from_static(token),
        reporter: Bytes::from_static(b"\x08\x01"),
        timestamp_offset_micros: 7,
    }
}

fn spans(n: u8, len: usize) -> SpanRuns {
    let runs: Vec<Bytes> = (0..n).map(|i| Bytes::from(vec![i; len])).collect();
    SpanRuns {
        count: u32::from(n),
        bytes: runs.iter().map(Bytes::len).sum(),
        runs,
    }
}

fn open(dir: &Path, limit: u64) -> (Spool, Recovered) {
    Spool::open(&SpoolConfig {
        dir: dir.to_owned(),
        limit_bytes: limit,
    })
    .unwrap()
}

fn files(dir: &Path) -> usize {
    segment::list(dir).unwrap().len()
}

fn ring(capacity: usize) -> (Ring, tokio::sync::mpsc::UnboundedReceiver<Report>) {
    let (ring, mut shards) = Ring::without_arena(RingConfig {
        capacity_bytes: capacity,
        high_water: 0.8,
        low_water: 0.6,
        shards: 1,
    });
    (ring, shards.remove(0))
}

#[test]
fn acknowledged_records_free_their_segment_once_it_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let tickets: Vec<Spooled> = (0..3)
        .map(|_| spool.write(&key(b"t"), &spans(2, 100), true).unwrap())
        .collect();
    assert_eq!(spool.status().records, 3);
    let mut batch = Spooled::default();
    for ticket in tickets {
        batch.absorb(ticket);
    }
    drop(batch);
    assert_eq!(spool.status().records, 0);
    assert_eq!(files(dir.path()), 1, "the active segment stays");
    // A record larger than the active segment's room seals it: finished, it is deleted.
    let big = spool.write(&key(b"t"), &spans(1, 2 << 20), true).unwrap();
    assert_eq!(files(dir.path()), 1, "the finished segment is gone");
    assert_eq!(spool.status().records, 1);
    drop(big);
    assert_eq!(spool.status().records, 0);
    assert_eq!(files(dir.path()), 1, "the active segment stays");
}

#[test]
fn only_unacknowledged_records_are_found_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let kept = spool.write(&key(b"a"), &spans(3, 10), true).unwrap();
    drop(spool.write(&key(b"b"), &spans(1, 10), true).unwrap());
    let _spilled = spool.write(&key(b"c"), &spans(2, 10), false).unwrap();
    // The process dies: nothing more is acknowledged.
    spool.freeze();
    drop(kept);
    drop(spool);
    let (spool, recovered) = open(dir.path(), 64 << 20);
    // The delivered record shares the segment with undelivered ones; its acknowledgement
    // file says it was delivered, so it is not sent again.
    assert_eq!(
        recovered,
        Recovered {
            segments: 1,
            records: 2,
            delivered: 1,
            corrupt: 0
        }
    );
    assert_eq!(spool.waiting_records(), 2);
    assert_eq!(spool.status().records, 2);
}

/// The tokens of the records waiting in `dir`'s spool, in replay order.
async fn replayed_tokens(dir: &Path) -> Vec<Bytes> {
    let (spool, recovered) = open(dir, 64 << 20);
    let (ring, mut rx) = ring(1 << 20);
    let ring = ring.with_spool(spool.clone());
    let stop = CancellationToken::new();
    tokio::spawn(spool.clone().replay(ring.clone(), stop.clone()));
    let mut tokens = Vec::new();
    for _ in 0..recovered.records {
        let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        tokens.push(report.key.token.clone());
    }
    stop.cancel();
    spool.freeze();
    tokens
}

#[test]
fn a_delivered_active_segment_is_not_sent_again_and_its_files_go() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let batch: Vec<Spooled> = (0..5)
        .map(|_| spool.write(&key(b"t"), &spans(2, 10), true).unwrap())
        .collect();
    drop(batch);
    // Killed while the segment is still the active one: it was never deleted.
    spool.freeze();
    drop(spool);
    assert_eq!(files(dir.path()), 1);
    let (_, recovered) = open(dir.path(), 64 << 20);
    assert_eq!((recovered.records, recovered.delivered), (0, 5));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "segment and acknowledgement file deleted"
    );
}

#[tokio::test]
async fn acknowledgements_name_records_by_offset_so_damage_does_not_shift_them() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let tickets: Vec<Spooled> = [&b"a"[..], b"b", b"c", b"d"]
        .iter()
        .map(|t| {
            let key = BatchKey {
                token: Bytes::copy_from_slice(t),
                ..key(b"")
            };
            spool.write(&key, &spans(1, 100), true).unwrap()
        })
        .collect();
    let mut tickets = tickets.into_iter();
    let (a, b, c, d) = (
        tickets.next().unwrap(),
        tickets.next().unwrap(),
        tickets.next().unwrap(),
        tickets.next().unwrap(),
    );
    drop(c); // delivered
    spool.freeze();
    drop((a, b, d, spool));
    // "b" is damaged on disk: the scan skips it, and "c" (acknowledged) must still be the
    // one skipped as delivered, not "d".
    let (_, path) = segment::list(dir.path()).unwrap().remove(0);
    let mut bytes = std::fs::read(&path).unwrap();
    let found = record::scan(&bytes);
    bytes[found.records[1].0 + 30] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(replayed_tokens(dir.path()).await, [&b"a"[..], b"d"]);
}

#[tokio::test]
async fn stale_or_damaged_acknowledgements_never_lose_a_record() {
    let dir = tempfile::tempdir().unwrap();
    // An acknowledgement file left without its segment (the process died between the two
    // deletions) must not skip the records of the next segment of that number.
    let mut frame = Vec::new();
    acks::encode(&mut frame, &[0]);
    std::fs::write(acks::path(dir.path(), 0), &frame).unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let mut tickets: Vec<Spooled> = (0..3)
        .map(|_| spool.write(&key(b"t"), &spans(1, 10), true).unwrap())
        .collect();
    drop(tickets.remove(0));
    drop(tickets.remove(0));
    spool.freeze();
    drop((tickets, spool));
    let ack_file = acks::path(dir.path(), 0);
    let written = std::fs::read(&ack_file).unwrap();
    assert_eq!(
        written.len(),
        2 * (12 + 4),
        "two frames, the stale one gone"
    );
    // The second frame is torn: its record is sent again (at least once), the first's not.
    std::fs::write(&ack_file, &written[..written.len() - 1]).unwrap();
    let (spool, recovered) = open(dir.path(), 64 << 20);
    assert_eq!((recovered.records, recovered.delivered), (2, 1));
    // The torn frame is cut off, so what this run acknowledges is read at the next start.
    assert_eq!(std::fs::metadata(&ack_file).unwrap().len(), 16);
    let (ring, mut rx) = ring(1 << 20);
    let ring = ring.with_spool(spool.clone());
    let stop = CancellationToken::new();
    tokio::spawn(spool.clone().replay(ring, stop.clone()));
    drop(rx.recv().await.unwrap());
    stop.cancel();
    spool.freeze();
    drop(spool);
    let (_, recovered) = open(dir.path(), 64 << 20);
    assert_eq!((recovered.records, recovered.delivered), (1, 2));
}

#[tokio::test]
async fn spilled_and_recovered_records_are_replayed_in_order_with_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = open(dir.path(), 64 << 20);
        spool.write(&key(b"first"), &spans(2, 5), false).unwrap();
        spool.freeze();
    }
    let (spool, _) = open(dir.path(), 64 << 20);
    spool.write(&key(b"second"), &spans(1, 5), false).unwrap();
    let (ring, mut rx) = ring(1 << 20);
    let ring = ring.with_spool(spool.clone());
    let stop = CancellationToken::new();
    tokio::spawn(spool.clone().replay(ring.clone(), stop.clone()));
    let first = rx.recv().await.unwrap();
    let second = rx.recv().await.unwrap();
    assert_eq!(first.key, key(b"first"));
    assert_eq!(first.spans, spans(2, 5));
    assert_eq!(second.key, key(b"second"));
    assert!(first.charge.bytes() > 0, "read back into the budget");
    assert_eq!(spool.waiting_records(), 0);
    assert_eq!(spool.status().records, 2);
    drop((first, second));
    assert_eq!(spool.status().records, 0, "delivered: acknowledged");
    stop.cancel();
}

#[tokio::test]
async fn past_the_spill_mark_a_report_waits_on_disk_and_keeps_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 64 << 20);
    let (ring, mut rx) = ring(1000);
    let ring = ring.with_spool(spool.clone());
    let held = ring.reserve(600, 1).unwrap(); // past the mark (500)
    let charge = ring.reserve(100, 2).unwrap();
    ring.push(key(b"t"), spans(2, 10), charge).unwrap();
    assert!(rx.try_recv().is_err(), "spilled, not in memory");
    assert_eq!(ring.used_bytes(), 600);
    assert_eq!(spool.waiting_records(), 1);
    // While one waits, newer reports wait behind it (order), even with room.
    drop(held);
    let charge = ring.reserve(100, 1).unwrap();
    ring.push(key(b"u"), spans(1, 10), charge).unwrap();
    assert_eq!(spool.waiting_records(), 2);
    // The budget cannot hold it at all: still admitted, to disk.
    let huge = ring.reserve(5000, 1).unwrap();
    assert_eq!(huge.bytes(), 0);
    ring.push(key(b"v"), spans(1, 10), huge).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(spool.clone().replay(ring.clone(), stop.clone()));
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        tokens.push(report.key.token.clone());
    }
    assert_eq!(tokens, [&b"t"[..], b"u", b"v"]);
    stop.cancel();
}

#[test]
fn a_full_spool_refuses_and_a_returned_batch_waits_again() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 1 << 20);
    let ticket = spool.write(&key(b"t"), &spans(1, 600 << 10), true).unwrap();
    let refused = spool
        .write(&key(b"t"), &spans(1, 600 << 10), true)
        .unwrap_err();
    assert!(
        matches!(refused, SpoolFull::Limit { limit, .. } if limit == 1 << 20),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("--spool-bytes"));
    assert!(ticket.return_to_spool());
    drop(ticket);
    assert_eq!(spool.waiting_records(), 1);
    assert_eq!(spool.status().records, 1, "returned, not acknowledged");
}

#[test]
fn segment_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = open(dir.path(), 8 << 20);
    let _ticket = spool.write(&key(b"secret"), &spans(1, 1), true).unwrap();
    drop(spool.write(&key(b"secret"), &spans(1, 1), true).unwrap());
    assert!(acks::path(dir.path(), 0).exists());
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let mode = entry.unwrap().metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn replay_reads_in_chunks_in_order_across_segments_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    // 1 MiB segments: 700 records of about 2 KiB take two.
    let (spool, _) = open(dir.path(), 16 << 20);
    let records = 700u32;
    for i in 0..records {
        let mut run = vec![0u8; 2000];
        run[..4].copy_from_slice(&i.to_le_bytes());
        let spans = SpanRuns {
            count: 1,
            bytes: run.len(),
            runs: vec![Bytes::from(run)],
        };
        spool.write(&key(b"t"), &spans, false).unwrap();
    }
    assert!(files(dir.path()) >= 2);
    // A 64 KiB budget: the spill mark lets about 15 records in at a time, so chunks are cut
    // by the budget, not only by their own bounds.
    let (ring, mut rx) = ring(64 << 10);
    let ring = ring.with_spool(spool.clone());
    let stop = CancellationToken::new();
    tokio::spawn(spool.clone().replay(ring.clone(), stop.clone()));
    for want in 0..records {
        let report = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let got = u32::from_le_bytes(report.spans.runs[0][..4].try_into().unwrap());
        assert_eq!(got, want, "in order");
        assert!(ring.used_bytes() <= 32 << 10, "within the spill mark");
        assert!(report.charge.bytes() >= 2000, "charged before it was read");
    }
    assert_eq!(spool.waiting_records(), 0);
    stop.cancel();
}

#[test]
fn nearly_full_from_the_high_water_mark_until_below_the_low_one() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 2u64 << 20;
    let (spool, _) = open(dir.path(), limit);
    let record = 100 << 10;
    let mut tickets = Vec::new();
    let mut written = 0;
    while let Ok(ticket) = spool.write(&key(b"t"), &spans(1, record), true) {
        tickets.push(ticket);
        written += record as u64;
        let past_mark = written as f64 >= limit as f64 * READY_HIGH_WATER;
        if !past_mark {
            assert!(!spool.is_nearly_full(), "{written} bytes written");
        }
    }
    assert!(spool.is_nearly_full(), "refused: nearly full");
    // A few delivered: their segment still holds others, so the disk is not given back.
    tickets.truncate(tickets.len() - 2);
    assert!(spool.is_nearly_full(), "still above the low-water mark");
    // All delivered: the segments go, and with them the fill.
    drop(tickets);
    assert!(!spool.is_nearly_full());
}
