//! One spool segment file: its name, its creation (mode 0600, its blocks reserved up front),
//! and the memory map of the active segment that records are copied into.
//!
//! Records are copied into a shared file mapping, so a record is in the kernel's page cache,
//! and survives `kill -9`, the moment the copy ends: no system call per record. The blocks
//! are reserved when the file is made (`posix_fallocate`), so a full disk refuses a new
//! segment instead of killing the process with `SIGBUS` on a write into a hole. Only the
//! active segment is mapped: a sealed one is unmapped and trimmed to what was written, so
//! the spool adds at most one segment to the resident set.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

/// Segment files end in this.
const SUFFIX: &str = ".spool";

/// The path of segment `id` in `dir`: its number, zero-padded so names sort in write order.
pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SUFFIX}"))
}

/// The segment number in a file name, if it is a segment's.
pub fn id_of(name: &OsStr) -> Option<u64> {
    let name = name.to_str()?;
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every segment file in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(id) = id_of(&entry.file_name()) {
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
    map: MmapMut,
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
        let made = reserve(&file, capacity).and_then(|()| {
            // SAFETY: the file was just created by this process with mode 0600 and is only
            // written through this map; another process changing it under us is outside what
            // the spool promises (a changed record fails its checksum when read back).
            unsafe { MmapMut::map_mut(&file) }
        });
        match made {
            Ok(map) => Ok(Active {
                id,
                file,
                map,
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
        self.map.len() - self.len
    }

    /// Bytes reserved on disk.
    pub fn capacity(&self) -> usize {
        self.map.len()
    }

    /// A handle to read records back while it is still written to.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Appends a record of `len` bytes (at most [`Active::room`]) written by `write`;
    /// returns its offset.
    pub fn append(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> usize {
        let at = self.len;
        write(&mut self.map[at..at + len]);
        self.len += len;
        at
    }

    /// Stops writing: starts the write-back, unmaps, and gives back the unwritten tail.
    pub fn seal(self) {
        let _ = self.map.flush_async();
        drop(self.map);
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
        let at = a.append(3, |dst| dst.copy_from_slice(b"abc"));
        assert_eq!((at, a.room()), (0, 4093));
        assert_eq!(read_at(&a.reader().unwrap(), 0, 3).unwrap(), b"abc");
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
            3,
            "sealed segments give back their unwritten tail"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
