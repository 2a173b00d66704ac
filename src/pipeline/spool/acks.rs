//! Delivery progress on disk: one acknowledgement file per segment (`<id>.acks` beside
//! `<id>.spool`), so a restart skips the records already delivered instead of sending them
//! again.
//!
//! ```text
//!  0      4      8      12
//!  magic  count  crc32  count record offsets (u32, little-endian)
//!  CSA\1  u32    of the offsets
//! ```
//!
//! Every acknowledgement (one delivered batch, most often) appends one frame naming the
//! offsets of its records in the segment, with one `write` to a file opened for appending:
//! the spool's habit for records, so once the call returns the frame is in the page cache and
//! survives `kill -9`; no `fsync`. Records are named by offset, not by their index, so a
//! damaged record skipped at recovery does not shift which records a frame names. Reading
//! stops at the first frame that does not hold (torn by a crash mid-write, or damaged): the
//! records it and later frames name are replayed, a duplicate and never a loss. The file is
//! deleted with its segment; one left without its segment (the process died between the
//! two deletions) is deleted at the next start, before a segment of that number can exist.
//!
//! Disk outside `--spool-bytes`: 4 bytes per delivered record and 12 per acknowledgement.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::segment;

/// `CSA` and the format version.
pub const MAGIC: [u8; 4] = *b"CSA\x01";
/// Bytes before a frame's offsets.
const HEADER_LEN: usize = 12;
/// Acknowledgement files end in this.
const SUFFIX: &str = ".acks";

/// The acknowledgement file of segment `id` in `dir`.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// Every acknowledgement file in `dir`, by segment number.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    segment::list_numbered(dir, SUFFIX)
}

/// Writes the frame naming `offsets` into `frame` (cleared first).
pub fn encode(frame: &mut Vec<u8>, offsets: &[u32]) {
    frame.clear();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    for offset in offsets {
        frame.extend_from_slice(&offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&frame[HEADER_LEN..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// What an acknowledgement file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Acked {
    /// Offsets of records delivered (or dropped for good).
    pub offsets: HashSet<u32>,
    /// Where reading stopped at a frame that does not hold (a torn tail, or damage).
    pub damaged_at: Option<usize>,
}

/// Reads the frames in `buf`, up to the first one that does not hold.
pub fn decode(buf: &[u8]) -> Acked {
    let mut acked = Acked::default();
    let mut at = 0;
    while at < buf.len() {
        let frame = frame_at(&buf[at..]);
        let Some(offsets) = frame else {
            acked.damaged_at = Some(at);
            break;
        };
        acked.offsets.extend(
            offsets
                .chunks_exact(4)
                .map(|o| u32::from_le_bytes([o[0], o[1], o[2], o[3]])),
        );
        at += HEADER_LEN + offsets.len();
    }
    acked
}

/// The offsets' bytes of the whole, valid frame at the start of `buf`.
fn frame_at(buf: &[u8]) -> Option<&[u8]> {
    let header = buf.get(..HEADER_LEN)?;
    if header[..4] != MAGIC {
        return None;
    }
    let count = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    let offsets = buf.get(HEADER_LEN..HEADER_LEN + count.checked_mul(4)?)?;
    (crc32fast::hash(offsets) == crc).then_some(offsets)
}

/// Reads the acknowledgement file of segment `id`, if there is one.
pub fn read(dir: &Path, id: u64) -> io::Result<Acked> {
    match std::fs::read(path(dir, id)) {
        Ok(buf) => Ok(decode(&buf)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Acked::default()),
        Err(error) => Err(error),
    }
}

/// Opens (making it if needed) the acknowledgement file of segment `id` for appending,
/// readable and writable by its owner only, like the segment.
pub fn open(dir: &Path, id: u64) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path(dir, id))
}

/// Deletes the acknowledgement file of segment `id`, if there is one.
pub fn remove(dir: &Path, id: u64) -> io::Result<()> {
    match std::fs::remove_file(path(dir, id)) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(parts: &[&[u32]]) -> Vec<u8> {
        let mut file = Vec::new();
        let mut frame = Vec::new();
        for offsets in parts {
            encode(&mut frame, offsets);
            file.extend_from_slice(&frame);
        }
        file
    }

    #[test]
    fn frames_round_trip() {
        let file = frames(&[&[0, 64], &[], &[128]]);
        let acked = decode(&file);
        assert_eq!(acked.offsets, HashSet::from([0, 64, 128]));
        assert_eq!(acked.damaged_at, None);
    }

    #[test]
    fn a_torn_or_damaged_frame_ends_the_reading_and_names_nothing() {
        let file = frames(&[&[0, 64], &[128, 192]]);
        let second = HEADER_LEN + 8;
        // Torn: the process died while the second frame was written.
        let acked = decode(&file[..file.len() - 3]);
        assert_eq!(acked.offsets, HashSet::from([0, 64]));
        assert_eq!(acked.damaged_at, Some(second));
        // A flipped byte in the second frame's offsets.
        let mut damaged = file.clone();
        damaged[second + HEADER_LEN] ^= 1;
        assert_eq!(decode(&damaged).offsets, HashSet::from([0, 64]));
        // A count that runs past the end.
        let mut damaged = file;
        damaged[second + 4] = 0xFF;
        assert_eq!(decode(&damaged).damaged_at, Some(second));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
