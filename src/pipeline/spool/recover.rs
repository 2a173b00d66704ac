//! Restart: reading back the segments an earlier run left, skipping the records their
//! acknowledgement files name ([`super::acks`]) and the damaged ones (counted and logged with
//! the file's name and offset, never fatal).

use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tracing::warn;

use super::{RecordId, Recovered, Segment, Slot, SlotState, Spool, State, acks, record};

impl Spool {
    /// Reads one segment left by an earlier run, and its acknowledgements; counts what it
    /// found into `recovered`.
    pub(super) fn recover(
        &self,
        state: &mut State,
        id: u64,
        path: PathBuf,
        recovered: &mut Recovered,
    ) {
        let name = path.display().to_string();
        let read = std::fs::read(&path).and_then(|bytes| Ok((File::open(&path)?, bytes)));
        let (reader, bytes) = match read {
            Ok(read) => read,
            Err(error) => {
                warn!(file = %name, %error, "spool: cannot read segment; skipped");
                self.shared.metrics.corrupt.increment(1);
                recovered.corrupt += 1;
                return;
            }
        };
        let found = record::scan(&bytes);
        if let Some((offset, _)) = found.damaged.first() {
            self.shared
                .metrics
                .corrupt
                .increment(found.damaged.len() as u64);
            warn!(
                file = %name,
                offset,
                damaged = found.damaged.len(),
                kept = found.records.len(),
                "spool: damaged records (bad checksum or torn tail) skipped"
            );
        }
        recovered.corrupt += found.damaged.len();
        let acked = self.read_acks(id);
        let delivered = found
            .records
            .iter()
            .filter(|(offset, _)| acked.contains(&(*offset as u32)))
            .count();
        recovered.delivered += delivered;
        let records = found.records.len() - delivered;
        recovered.records += records;
        if records == 0 {
            let _ = std::fs::remove_file(&path);
            let _ = acks::remove(&self.shared.dir, id);
            return;
        }
        let mut segment = Segment {
            path,
            reader: Arc::new(reader),
            slots: Vec::with_capacity(found.records.len()),
            live: records as u32,
            disk_bytes: bytes.len() as u64,
            record_bytes: 0,
            started: found
                .records
                .first()
                .and_then(|(offset, _)| record::written_at(&bytes[*offset..]))
                .unwrap_or_else(SystemTime::now),
            acks: None,
            acks_failed: false,
        };
        for (index, (offset, len)) in found.records.into_iter().enumerate() {
            let offset = offset as u32;
            let delivered = acked.contains(&offset);
            segment.slots.push(Slot {
                offset,
                len: len as u32,
                state: if delivered {
                    SlotState::Done
                } else {
                    SlotState::Pending
                },
            });
            segment.record_bytes += len as u64;
            if !delivered {
                state.pending.insert(RecordId {
                    segment: id,
                    index: index as u32,
                });
            }
        }
        state.disk_bytes += segment.disk_bytes;
        state.record_bytes += segment.record_bytes;
        state.live += records as u64;
        state.segments.insert(id, segment);
    }

    /// The offsets of segment `id`'s records its acknowledgement file names (none when it
    /// cannot be read: they are sent again).
    fn read_acks(&self, id: u64) -> HashSet<u32> {
        let file = acks::path(&self.shared.dir, id);
        match acks::read(&self.shared.dir, id) {
            Ok(acked) => {
                if let Some(offset) = acked.damaged_at {
                    warn!(file = %file.display(), offset, "spool: acknowledgement file damaged from this offset on; the records it names after it are sent again");
                    // Cut there, so the frames this run appends are read at the next start.
                    let cut = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&file)
                        .and_then(|f| f.set_len(offset as u64));
                    if let Err(error) = cut {
                        warn!(file = %file.display(), %error, "spool: cannot cut a damaged acknowledgement file");
                    }
                }
                acked.offsets
            }
            Err(error) => {
                warn!(file = %file.display(), %error, "spool: cannot read acknowledgements; the segment's delivered records are sent again");
                Default::default()
            }
        }
    }
}
