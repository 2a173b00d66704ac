//! One spool segment file: its name, its creation (mode 0600, its blocks reserved up front),
//! and appending records to the active one.
//!
//! A record is appended with one vectored `write` (its head, then the span runs as they are,
//! then padding): once the call returns the record is in the kernel's page cache and survives
//! `kill -9`. A shared memory map was tried first, to avoid the system call; on ext4 its page
//! faults (one per 4 KiB page, each starting a journal handle) measured 2-4x the cost of the
//! `write`, and it added the mapped segment to the resident set (BENCHMARKS.md). The blocks
//! are reserved when the file is made (`posix_fallocate`), so the disk filling up shows as a
//! refused new segment rather than a failed write in the middle of one; a sealed segment is
//! trimmed to what was written.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::record::PADDING;

/// Segment files end in this.
const SUFFIX: &str = ".spool";

/// The path of segment `id` in `dir`: its number, zero-padded so names sort in write order.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// The segment number in a file name, if it is a segment's.
pub fn id_of(name: &OsStr) -> Option<u64> {
    number_of(name, SUFFIX)
}

/// The number in a file name of a segment's (zero-padded digits, then `suffix`).
fn number_of(name: &OsStr, suffix: &str) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment file in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_numbered(dir, SUFFIX)
}

/// Every file in `dir` named like a segment but ending in `suffix`, by number.
pub fn list_numbered(dir: &Path, suffix: &str) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = number_of(&entry.file_name(), suffix) {
            found.push((id, entry.path()));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The segment records are appended to now.
#[derive(Debug)]
pub struct Active {
    /// Its number.
    pub id: u64,
    file: File,
    capacity: usize,
    /// Bytes written so far.
    pub len: usize,
}

impl Active {
    /// Creates segment `id` in `dir` with `capacity` bytes reserved, readable and writable
    /// by its owner only (the records hold access tokens).
    pub fn create(dir: &Path, id: u64, capacity: usize) -> io::Result<Active> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = path(dir, id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        match reserve(&file, capacity) {
            Ok(()) => Ok(Active {
                id,
                file,
                capacity,
                len: 0,
            }),
            Err(error) => {
                let _ = std::fs::remove_file(&path);
                Err(error)
            }
        }
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        self.capacity - self.len
    }

    /// Bytes reserved on disk.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A handle to read records back while it is still written to.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Appends a record of `len` bytes (at most [`Active::room`]): `head`, the `runs`, then
    /// padding up to `len`, in one vectored write; returns its offset. On an error the segment
    /// must be sealed (what was written of the record is cut off there).
    pub fn append(&mut self, len: usize, head: &[u8], runs: &[Bytes]) -> io::Result<usize> {
        let written: usize = head.len() + runs.iter().map(Bytes::len).sum::<usize>();
        let pad = len.checked_sub(written).filter(|pad| *pad < PADDING.len());
        let pad =
            pad.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record length"))?;
        let mut slices = Vec::with_capacity(runs.len() + 2);
        slices.push(IoSlice::new(head));
        slices.extend(runs.iter().map(|run| IoSlice::new(run)));
        slices.push(IoSlice::new(&PADDING[..pad]));
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.file.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        let at = self.len;
        self.len += len;
        Ok(at)
    }

    /// Stops writing: gives back the unwritten tail (and whatever a failed append left past
    /// the last whole record). No write-back is forced: with a healthy upstream a segment is
    /// delivered and deleted before the kernel would write it, so it never costs disk I/O.
    pub fn seal(self) {
        let _ = self.file.set_len(self.len as u64);
    }
}

/// Reserves the file's blocks, so writes through the map cannot hit a full disk.
#[cfg(target_os = "linux")]
fn reserve(file: &File, capacity: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(capacity)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: a plain system call on a descriptor this function borrows.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        // A file system without it: a sparse file (a full disk then shows at write-back).
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(capacity as u64),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Reserves the file's blocks (elsewhere: sets its length).
#[cfg(not(target_os = "linux"))]
fn reserve(file: &File, capacity: usize) -> io::Result<()> {
    file.set_len(capacity as u64)
}

/// Reads `len` bytes at `offset` of `file`.
pub fn read_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_write_order_and_others_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 42);
        assert_eq!(id_of(p.file_name().unwrap()), Some(42));
        assert_eq!(id_of(OsStr::new("42.spool")), None);
        assert_eq!(id_of(OsStr::new("notes.txt")), None);
        let mut a = Active::create(dir.path(), 10, 4096).unwrap();
        Active::create(dir.path(), 9, 4096).unwrap().seal();
        std::fs::write(dir.path().join("README"), b"x").unwrap();
        let at = a.append(8, b"ab", &[Bytes::from_static(b"c")]).unwrap();
        assert_eq!((at, a.room()), (0, 4088));
        assert_eq!(
            read_at(&a.reader().unwrap(), 0, 8).unwrap(),
            b"abc\0\0\0\0\0"
        );
        let at = a.append(8, b"12345678", &[]).unwrap();
        assert_eq!(at, 8);
        a.seal();
        let ids: Vec<u64> = list(dir.path())
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(ids, vec![9, 10]);
        let meta = std::fs::metadata(path(dir.path(), 10)).unwrap();
        assert_eq!(
            meta.len(),
            16,
            "sealed segments give back their unwritten tail"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
