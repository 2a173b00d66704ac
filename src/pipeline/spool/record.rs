//! The spool's record format: one admitted report, written once, read back after a restart.
//!
//! ```text
//!  0      4      8      12                                           12+len   (padded to 8)
//!  magic  len    crc32  payload: protocol, spans, clock offset, written-at,
//!  CSP\1  u32    of     token, reporter, run lengths, run bytes
//! ```
//!
//! All integers are little-endian. The magic carries the format version (`CSP` + 1). The
//! checksum (CRC-32, `crc32fast`) covers the payload; a record whose magic, length or
//! checksum does not hold is damage, and [`scan`] skips it by looking for the next valid
//! record at the following 8-byte boundaries, so one flipped byte costs one record, not the
//! rest of the file. Zeros where a header should be are the unwritten (preallocated) end.
//!
//! Never decodes a span: runs are written and read back as opaque bytes.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::pipeline::{BatchKey, Protocol};
use crate::wire::report::SpanRuns;

/// `CSP` and the format version.
pub const MAGIC: [u8; 4] = *b"CSP\x01";
/// Bytes before the payload: magic, payload length, payload checksum.
pub const HEADER_LEN: usize = 12;
/// Records start at multiples of this, so a scan past damage tries few offsets.
pub const ALIGN: usize = 8;
/// Fixed fields at the start of the payload.
const FIXED_LEN: usize = 40;

/// Why a stored record cannot be read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes do not start with the record magic.
    #[error("no record magic")]
    Magic,
    /// The length runs past the end of the file (a torn tail).
    #[error("record length {0} runs past the end of the file")]
    Torn(usize),
    /// The checksum does not match the payload.
    #[error("checksum mismatch")]
    Checksum,
    /// The payload's own lengths do not add up.
    #[error("payload fields do not add up")]
    Layout,
}

/// A record read back: the report's batch key and span runs (slices of the read buffer), and
/// when it was written.
#[derive(Debug)]
pub struct Decoded {
    /// The key its spans join.
    pub key: BatchKey,
    /// The spans.
    pub spans: SpanRuns,
    /// When the record was written, in milliseconds since the Unix epoch.
    pub written_at_ms: u64,
}

/// Bytes the record for `key` and `spans` takes on disk, padding included.
pub fn encoded_len(key: &BatchKey, spans: &SpanRuns) -> usize {
    let payload = FIXED_LEN
        + key.token.len()
        + key.reporter.len()
        + 4 * spans.runs.len()
        + spans.runs.iter().map(Bytes::len).sum::<usize>();
    (HEADER_LEN + payload).next_multiple_of(ALIGN)
}

/// Zero bytes that pad a record to [`ALIGN`].
pub const PADDING: [u8; ALIGN] = [0; ALIGN];

/// Writes the record's leading bytes into `head` (cleared first): header, fixed fields, token,
/// reporter and run lengths. On disk the span runs follow them as they are, then
/// `encoded_len - head.len() - runs` bytes of [`PADDING`]; the checksum covers it all, so the
/// span bytes are never copied to build the record.
pub fn encode_head(head: &mut Vec<u8>, key: &BatchKey, spans: &SpanRuns, written_at_ms: u64) {
    head.clear();
    head.extend_from_slice(&[0; HEADER_LEN]);
    let protocol: u8 = match key.protocol {
        Protocol::Lightstep => 1,
        Protocol::Otlp => 2,
    };
    head.extend_from_slice(&[protocol, 0, 0, 0]);
    head.extend_from_slice(&spans.count.to_le_bytes());
    head.extend_from_slice(&key.timestamp_offset_micros.to_le_bytes());
    head.extend_from_slice(&written_at_ms.to_le_bytes());
    head.extend_from_slice(&(key.token.len() as u32).to_le_bytes());
    head.extend_from_slice(&(key.reporter.len() as u32).to_le_bytes());
    head.extend_from_slice(&(spans.runs.len() as u32).to_le_bytes());
    head.extend_from_slice(&[0; 4]);
    head.extend_from_slice(&key.token);
    head.extend_from_slice(&key.reporter);
    for run in &spans.runs {
        head.extend_from_slice(&(run.len() as u32).to_le_bytes());
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[HEADER_LEN..]);
    let mut payload_len = head.len() - HEADER_LEN;
    for run in &spans.runs {
        crc.update(run);
        payload_len += run.len();
    }
    head[..4].copy_from_slice(&MAGIC);
    head[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    head[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
}

/// The whole record in one buffer (tests, tools).
pub fn encode(key: &BatchKey, spans: &SpanRuns, written_at_ms: u64) -> Vec<u8> {
    let mut record = Vec::with_capacity(encoded_len(key, spans));
    encode_head(&mut record, key, spans, written_at_ms);
    for run in &spans.runs {
        record.extend_from_slice(run);
    }
    record.resize(encoded_len(key, spans), 0);
    record
}

/// Checks the record at the start of `buf`; returns its length on disk, padding included.
pub fn check(buf: &[u8]) -> Result<usize, RecordError> {
    if buf.len() < HEADER_LEN || buf[..4] != MAGIC {
        return Err(RecordError::Magic);
    }
    let len = u32_at(buf, 4) as usize;
    if len < FIXED_LEN || buf.len() - HEADER_LEN < len {
        return Err(RecordError::Torn(len));
    }
    if crc32fast::hash(&buf[HEADER_LEN..HEADER_LEN + len]) != u32_at(buf, 8) {
        return Err(RecordError::Checksum);
    }
    Ok((HEADER_LEN + len).next_multiple_of(ALIGN).min(buf.len()))
}

/// Reads back one whole record (as [`check`] found it); runs and key are slices of `record`.
pub fn decode(record: Bytes) -> Result<Decoded, RecordError> {
    check(&record)?;
    let len = u32_at(&record, 4) as usize;
    let payload = record.slice(HEADER_LEN..HEADER_LEN + len);
    let protocol = match payload[0] {
        1 => Protocol::Lightstep,
        2 => Protocol::Otlp,
        _ => return Err(RecordError::Layout),
    };
    let count = u32_at(&payload, 4);
    let offset = i64::from_le_bytes(payload[8..16].try_into().map_err(|_| RecordError::Layout)?);
    let written_at_ms = u64::from_le_bytes(
        payload[16..24]
            .try_into()
            .map_err(|_| RecordError::Layout)?,
    );
    let token_len = u32_at(&payload, 24) as usize;
    let reporter_len = u32_at(&payload, 28) as usize;
    let runs = u32_at(&payload, 32) as usize;
    let mut at = FIXED_LEN;
    let mut take = |n: usize| -> Result<Bytes, RecordError> {
        let end = at.checked_add(n).filter(|end| *end <= payload.len());
        let end = end.ok_or(RecordError::Layout)?;
        let slice = payload.slice(at..end);
        at = end;
        Ok(slice)
    };
    let token = take(token_len)?;
    let reporter = take(reporter_len)?;
    let lens = take(runs.checked_mul(4).ok_or(RecordError::Layout)?)?;
    let mut spans = SpanRuns {
        runs: Vec::with_capacity(runs),
        count,
        bytes: 0,
    };
    for len in lens.chunks_exact(4) {
        let run = take(u32_at(len, 0) as usize)?;
        spans.bytes += run.len();
        spans.runs.push(run);
    }
    if at != payload.len() {
        return Err(RecordError::Layout);
    }
    Ok(Decoded {
        key: BatchKey {
            protocol,
            token,
            reporter,
            timestamp_offset_micros: offset,
        },
        spans,
        written_at_ms,
    })
}

/// When the (already checked) record at the start of `buf` was written.
pub fn written_at(buf: &[u8]) -> Option<SystemTime> {
    let at = HEADER_LEN + 16;
    let ms = u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?);
    UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(word)
}

/// What a scan of one segment file found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Valid records: offset and length on disk.
    pub records: Vec<(usize, usize)>,
    /// Damaged stretches skipped (torn tails, bad checksums, garbage): offset and length.
    pub damaged: Vec<(usize, usize)>,
}

/// Finds every valid record in a segment file's bytes, skipping damage.
pub fn scan(buf: &[u8]) -> Scan {
    let mut found = Scan::default();
    let mut at = 0;
    while at + HEADER_LEN <= buf.len() {
        if buf[at..at + HEADER_LEN].iter().all(|b| *b == 0) {
            // The unwritten end of a preallocated file, unless something valid follows.
            match resync(buf, at + ALIGN) {
                Some(next) => {
                    found.damaged.push((at, next - at));
                    at = next;
                    continue;
                }
                None => return found,
            }
        }
        match check(&buf[at..]) {
            Ok(len) => {
                found.records.push((at, len));
                at += len;
            }
            Err(_) => {
                let next = resync(buf, at + ALIGN).unwrap_or(buf.len());
                let damaged_end = last_nonzero(&buf[..next]).max(at + 1);
                found.damaged.push((at, damaged_end - at));
                at = next;
            }
        }
    }
    if at < buf.len() && buf[at..].iter().any(|b| *b != 0) {
        found.damaged.push((at, buf.len() - at));
    }
    found
}

/// The next offset at or after `from` (on the record alignment) where a valid record starts.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    let mut at = from.next_multiple_of(ALIGN);
    while at + HEADER_LEN <= buf.len() {
        if buf[at..at + 4] == MAGIC && check(&buf[at..]).is_ok() {
            return Some(at);
        }
        at += ALIGN;
    }
    None
}

fn last_nonzero(buf: &[u8]) -> usize {
    buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(token: &'static [u8], reporter: &'static [u8], protocol: Protocol) -> BatchKey {
        BatchKey {
            protocol,
            token: Bytes::from_static(token),
            reporter: Bytes::from_static(reporter),
            timestamp_offset_micros: -42,
        }
    }

    fn runs(runs: &[&'static [u8]]) -> SpanRuns {
        SpanRuns {
            runs: runs.iter().map(|r| Bytes::from_static(r)).collect(),
            count: runs.len() as u32,
            bytes: runs.iter().map(|r| r.len()).sum(),
        }
    }

    fn record(key: &BatchKey, spans: &SpanRuns) -> Vec<u8> {
        encode(key, spans, 1234)
    }

    #[test]
    fn a_record_round_trips() {
        let key = key(b"secret", b"\x08\x07", Protocol::Lightstep);
        let spans = runs(&[b"\x22\x01a", b"\x22\x02bc"]);
        let buf = record(&key, &spans);
        assert_eq!(buf.len() % ALIGN, 0);
        assert_eq!(check(&buf), Ok(buf.len()));
        let decoded = decode(Bytes::from(buf)).unwrap();
        assert_eq!(decoded.key, key);
        assert_eq!(decoded.spans, spans);
        assert_eq!(decoded.written_at_ms, 1234);
    }

    #[test]
    fn a_torn_tail_and_a_bad_checksum_are_damage_and_the_rest_is_kept() {
        let key = key(b"t", b"", Protocol::Otlp);
        let one = record(&key, &runs(&[b"first"]));
        let two = record(&key, &runs(&[b"second"]));
        let three = record(&key, &runs(&[b"third"]));
        let four = record(&key, &runs(&[b"fourth"]));
        let mut file = [one.clone(), two.clone(), three.clone()].concat();
        // A flipped payload byte in the second record.
        file[one.len() + HEADER_LEN + 20] ^= 0x40;
        assert_eq!(check(&file[one.len()..]), Err(RecordError::Checksum));
        // The fourth was cut off while it was written.
        let torn = &four[..four.len() - 3];
        assert!(matches!(check(torn), Err(RecordError::Torn(_))));
        file.extend_from_slice(torn);
        file.extend_from_slice(&[0; 64]);
        let found = scan(&file);
        let third_at = one.len() + two.len();
        assert_eq!(found.records, vec![(0, one.len()), (third_at, three.len())]);
        assert_eq!(
            found.damaged.iter().map(|d| d.0).collect::<Vec<_>>(),
            vec![one.len(), third_at + three.len()]
        );
    }

    #[test]
    fn damage_costs_one_record_not_the_rest_of_the_file() {
        let key = key(b"t", b"r", Protocol::Lightstep);
        let records: Vec<Vec<u8>> = [b"aaa", b"bbb", b"ccc", b"ddd", b"eee"]
            .iter()
            .map(|tail| record(&key, &runs(&[&[0u8; 40], *tail])))
            .collect();
        let mut file = records.concat();
        let second = records[0].len();
        file[second + 1] = b'X'; // the magic
        let found = scan(&file);
        assert_eq!(found.records.len(), 4);
        assert_eq!(found.damaged.len(), 1);
        // Zeros inside a payload are never taken for the end of the file.
        assert!(scan(&records.concat()).damaged.is_empty());
    }

    #[test]
    fn preallocated_zeros_are_the_end_not_damage() {
        let key = key(b"t", b"r", Protocol::Lightstep);
        let mut file = record(&key, &runs(&[b"x"]));
        file.resize(4096, 0);
        let found = scan(&file);
        assert_eq!(found.records.len(), 1);
        assert!(found.damaged.is_empty());
        assert_eq!(scan(&[0; 100]), Scan::default());
    }

    proptest! {
        #[test]
        fn any_report_round_trips(
            token in proptest::collection::vec(any::<u8>(), 0..40),
            reporter in proptest::collection::vec(any::<u8>(), 0..40),
            offset in any::<i64>(),
            runs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
        ) {
            let key = BatchKey {
                protocol: Protocol::Otlp,
                token: token.into(),
                reporter: reporter.into(),
                timestamp_offset_micros: offset,
            };
            let spans = SpanRuns {
                count: runs.len() as u32,
                bytes: runs.iter().map(Vec::len).sum(),
                runs: runs.into_iter().map(Bytes::from).collect(),
            };
            let buf = record(&key, &spans);
            let decoded = decode(Bytes::from(buf)).unwrap();
            prop_assert_eq!(decoded.key, key);
            prop_assert_eq!(decoded.spans, spans);
        }

        #[test]
        fn a_scan_of_any_bytes_never_panics_and_never_overlaps(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let found = scan(&bytes);
            let mut end = 0;
            for (at, len) in found.records {
                prop_assert!(at >= end && at + len <= bytes.len());
                end = at + len;
            }
        }
    }
}
