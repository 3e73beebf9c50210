//! The write-ahead log's I/O (FreshDiskANN, Singh et al. 2021, §4: updates are durable
//! before they are applied to the in-memory delta index): appending with group commit,
//! replay on open, and trimming after a merge. The byte format and its validation rules are
//! [`ssdann_layout::wal`] (docs/FORMAT.md, "wal.log").
//!
//! Replay reads records in order. A record cut short by the end of the file, or the last
//! record failing its CRC, is a torn tail from a crash during an append: it is truncated with
//! a warning (it was never acknowledged). A CRC failure or a sequence gap with more records
//! after it is corruption of acknowledged data: an error naming its byte offset, never
//! skipped.
//!
//! Durability (`SyncMode`): `Always` fsyncs every append (group commit: one fsync per
//! `append` call, however many records it carries) — an acknowledged update survives any
//! crash. `Interval(ms)` fsyncs from a background thread at most `ms` after an append — a
//! machine crash (power loss, kernel panic) can lose the updates of the last `ms`
//! milliseconds; a process crash loses nothing (the bytes are in the page cache).
//! `Never` leaves flushing to the OS — a process crash loses nothing, a machine crash can
//! lose every update since the OS last wrote the file back (typically up to ~30 s).

use crate::error::EngineError;
pub use crate::options::SyncMode;
use crate::Result;
use ssdann_layout::wal::{encode_header, encode_record, scan};
pub use ssdann_layout::wal::{
    WalOp, RECORD_HEAD_BYTES, WAL_FILE, WAL_HEADER_BYTES, WAL_MAGIC, WAL_VERSION,
};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What replay found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    /// Every valid record's operation, in order.
    pub ops: Vec<WalOp>,
    /// Sequence number of the last valid record (first_seq − 1 when there is none).
    pub last_seq: u64,
    /// Bytes of torn tail that were cut off (0 when the file ended cleanly).
    pub truncated_bytes: u64,
}

/// Reads and validates `path`; truncates a torn tail (printing one warning line).
///
/// # Errors
/// - [`EngineError::Layout`] for a bad file header (magic, version, CRC, dimension ≠ `dim`),
///   and naming the byte offset of a corrupt record, an unknown kind, a wrong payload size
///   or a sequence gap followed by more data.
/// - [`EngineError::Io`].
pub fn replay(path: &Path, dim: usize) -> Result<Replay> {
    read_wal(path, dim, true)
}

/// Like [`replay`], but never modifies the file (for `ssdann verify`): a torn tail is only
/// reported in [`Replay::truncated_bytes`].
///
/// # Errors
/// As [`replay`].
pub fn check(path: &Path, dim: usize) -> Result<Replay> {
    read_wal(path, dim, false)
}

fn read_wal(path: &Path, dim: usize, truncate: bool) -> Result<Replay> {
    let io = |e| EngineError::io(path, e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(truncate)
        .open(path)
        .map_err(io)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(io)?;
    let s = scan(path, &bytes, dim)?;
    let rep = Replay {
        ops: s.ops,
        last_seq: s.last_seq,
        truncated_bytes: s.torn_bytes,
    };
    if s.torn_bytes > 0 && truncate {
        let t = s.valid_bytes;
        eprintln!("warning: {}: truncating a torn tail of {} bytes at offset {t} (an append that never completed)", path.display(), s.torn_bytes);
        f.set_len(t).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    Ok(rep)
}

/// Drops the records with sequence numbers ≤ `through` (a merge folded them into the index):
/// rewrites the log as a new file holding the later records (first_seq = `through` + 1),
/// fsyncs it and renames it over `path`. Idempotent: a log whose records all come after
/// `through` is left alone. `through = u64::MAX` empties the log (first_seq back to 1). A
/// torn tail is dropped (it was never acknowledged). Returns the records kept.
///
/// # Errors
/// As [`replay`] (a corrupt record in the middle is an error, never skipped), and
/// [`EngineError::Io`].
pub fn trim(path: &Path, dim: usize, through: u64) -> Result<usize> {
    let io = |e| EngineError::io(path, e);
    let rep = read_wal(path, dim, false)?;
    let first = rep.last_seq + 1 - rep.ops.len() as u64;
    if through != u64::MAX && first > through && rep.truncated_bytes == 0 {
        return Ok(rep.ops.len());
    }
    let (base, kept) = if through == u64::MAX {
        (0, &rep.ops[..0])
    } else {
        let skip = through.saturating_sub(first - 1).min(rep.ops.len() as u64) as usize;
        (through.max(first - 1) + 1, &rep.ops[skip..])
    };
    let mut bytes = encode_header(dim as u32, base).to_vec();
    for (i, op) in kept.iter().enumerate() {
        encode_record(base.max(1) + i as u64, op, &mut bytes);
    }
    let tmp = path.with_extension("log.trim");
    let mut f = std::fs::File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| EngineError::io(&tmp, e))?;
    f.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(parent) = path.parent() {
        crate::io::fsync_dir(parent)?;
    }
    Ok(kept.len())
}

struct Shared {
    file: std::fs::File,
    next_seq: u64,
    dirty: bool,
    closed: bool,
}

/// An open WAL, appending. Cheap to share behind the index's update lock.
pub struct Wal {
    path: PathBuf,
    mode: SyncMode,
    state: Arc<(Mutex<Shared>, Condvar)>,
    buf: Vec<u8>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Wal {
    /// Opens (creating it with a header when absent) the WAL at `path` for appending after
    /// sequence number `last_seq` (from [`replay`]).
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub fn open(path: &Path, dim: usize, last_seq: u64, mode: SyncMode) -> Result<Wal> {
        let io = |e| EngineError::io(path, e);
        let exists = path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        if !exists || file.metadata().map_err(io)?.len() == 0 {
            file.write_all(&encode_header(dim as u32, 0)).map_err(io)?;
            file.sync_all().map_err(io)?;
            if let Some(parent) = path.parent() {
                crate::io::fsync_dir(parent)?;
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let state = Arc::new((
            Mutex::new(Shared {
                file,
                next_seq: last_seq + 1,
                dirty: false,
                closed: false,
            }),
            Condvar::new(),
        ));
        let flusher = match mode {
            SyncMode::Interval(ms) => {
                let st = state.clone();
                Some(std::thread::spawn(move || {
                    flush_loop(&st, Duration::from_millis(ms))
                }))
            }
            _ => None,
        };
        Ok(Wal {
            path: path.into(),
            mode,
            state,
            buf: Vec::new(),
            flusher,
        })
    }

    /// The durability mode.
    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Sequence number of the last record appended (or replayed).
    pub fn last_seq(&self) -> u64 {
        let (lock, _) = &*self.state;
        lock.lock().map_or(0, |g| g.next_seq - 1)
    }

    /// Appends `ops` as consecutive records in one write (and, in `Always` mode, one fsync:
    /// group commit). Returns the sequence number of the last one.
    ///
    /// # Errors
    /// [`EngineError::Io`]; after an error the WAL must be reopened (replay decides what
    /// survived).
    pub fn append(&mut self, ops: &[WalOp]) -> Result<u64> {
        let io = |e| EngineError::io(&self.path, e);
        let (lock, _) = &*self.state;
        let mut g = lock
            .lock()
            .map_err(|_| EngineError::io(&self.path, std::io::Error::other("WAL lock poisoned")))?;
        self.buf.clear();
        let first = g.next_seq;
        for (i, op) in ops.iter().enumerate() {
            encode_record(first + i as u64, op, &mut self.buf);
        }
        g.file.write_all(&self.buf).map_err(io)?;
        g.next_seq += ops.len() as u64;
        match self.mode {
            SyncMode::Always => g.file.sync_data().map_err(io)?,
            SyncMode::Interval(_) => g.dirty = true,
            SyncMode::Never => {}
        }
        Ok(g.next_seq - 1)
    }
}

fn flush_loop(state: &(Mutex<Shared>, Condvar), every: Duration) {
    let (lock, cv) = state;
    let Ok(mut g) = lock.lock() else { return };
    loop {
        let Ok((ng, _)) = cv.wait_timeout(g, every) else {
            return;
        };
        g = ng;
        if g.closed {
            if g.dirty {
                let _ = g.file.sync_data();
            }
            return;
        }
        if g.dirty {
            // An fsync failure here surfaces at the next `Always` append or at close; the
            // interval mode documents that a machine crash can lose the last interval.
            let _ = g.file.sync_data();
            g.dirty = false;
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut g) = lock.lock() {
            g.closed = true;
            if g.dirty {
                let _ = g.file.sync_data();
                g.dirty = false;
            }
        }
        cv.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<WalOp> {
        vec![
            WalOp::Insert {
                label: 7,
                vector: vec![1.0, 2.0, 3.0],
            },
            WalOp::Delete { label: 3 },
            WalOp::Insert {
                label: 9,
                vector: vec![0.5, -1.0, 4.0],
            },
        ]
    }

    #[test]
    fn trim_keeps_the_later_records_with_their_sequence_numbers_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WAL_FILE);
        let mut w = Wal::open(&p, 3, 0, SyncMode::Always).unwrap();
        w.append(&ops()).unwrap();
        drop(w);
        assert_eq!(trim(&p, 3, 2).unwrap(), 1);
        let r = replay(&p, 3).unwrap();
        assert_eq!((r.ops, r.last_seq), (ops()[2..].to_vec(), 3));
        assert_eq!(
            trim(&p, 3, 2).unwrap(),
            1,
            "a second trim through 2 keeps the same record"
        );
        assert_eq!(
            std::fs::read(&p).unwrap().len(),
            WAL_HEADER_BYTES + RECORD_HEAD_BYTES + 12
        );
        // appends continue the numbering; a later trim drops everything through 3
        let mut w = Wal::open(&p, 3, 3, SyncMode::Always).unwrap();
        assert_eq!(w.append(&[WalOp::Delete { label: 1 }]).unwrap(), 4);
        drop(w);
        assert_eq!(trim(&p, 3, 3).unwrap(), 1);
        let r = replay(&p, 3).unwrap();
        assert_eq!((r.ops, r.last_seq), (vec![WalOp::Delete { label: 1 }], 4));
        // through every record: empty, and the next append gets 5
        assert_eq!(trim(&p, 3, 4).unwrap(), 0);
        let r = replay(&p, 3).unwrap();
        assert_eq!((r.ops.len(), r.last_seq), (0, 4));
        let mut w = Wal::open(&p, 3, r.last_seq, SyncMode::Always).unwrap();
        assert_eq!(w.append(&[WalOp::Delete { label: 2 }]).unwrap(), 5);
        drop(w);
        // u64::MAX (a merge journal from before the WAL sequence was recorded): all gone
        assert_eq!(trim(&p, 3, u64::MAX).unwrap(), 0);
        assert_eq!(replay(&p, 3).unwrap().last_seq, 0);
    }

    #[test]
    fn round_trip_in_every_mode() {
        for mode in [SyncMode::Always, SyncMode::Interval(5), SyncMode::Never] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join(WAL_FILE);
            let mut w = Wal::open(&p, 3, 0, mode).unwrap();
            assert_eq!(w.append(&ops()[..2]).unwrap(), 2);
            assert_eq!(w.append(&ops()[2..]).unwrap(), 3);
            drop(w);
            let r = replay(&p, 3).unwrap();
            assert_eq!((r.ops, r.last_seq, r.truncated_bytes), (ops(), 3, 0));
            // appending after replay continues the sequence
            let mut w = Wal::open(&p, 3, 3, mode).unwrap();
            w.append(&[WalOp::Delete { label: 1 }]).unwrap();
            drop(w);
            assert_eq!(replay(&p, 3).unwrap().last_seq, 4);
        }
        assert_eq!(
            "interval=20".parse::<SyncMode>(),
            Ok(SyncMode::Interval(20))
        );
        assert!("interval=0".parse::<SyncMode>().is_err());
        assert!("sometimes".parse::<SyncMode>().is_err());
    }

    #[test]
    fn torn_tail_is_truncated_and_middle_corruption_is_an_error_naming_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(WAL_FILE);
        let mut w = Wal::open(&p, 3, 0, SyncMode::Always).unwrap();
        w.append(&ops()).unwrap();
        drop(w);
        let good = std::fs::read(&p).unwrap();
        let rec0 = RECORD_HEAD_BYTES + 12;
        let rec1 = RECORD_HEAD_BYTES;
        // every cut inside the last record: torn tail, the first two records survive
        for cut in 1..(RECORD_HEAD_BYTES + 12) {
            std::fs::write(&p, &good[..good.len() - cut]).unwrap();
            let r = replay(&p, 3).unwrap();
            assert_eq!(r.ops, ops()[..2].to_vec(), "cut {cut}");
            assert_eq!(r.truncated_bytes as usize, RECORD_HEAD_BYTES + 12 - cut);
            assert_eq!(
                std::fs::metadata(&p).unwrap().len() as usize,
                good.len() - (RECORD_HEAD_BYTES + 12)
            );
        }
        // a flipped byte in the last record: torn tail too
        let mut bad = good.clone();
        let last = bad.len() - 3;
        bad[last] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(replay(&p, 3).unwrap().ops.len(), 2);
        // a flipped byte in the middle record: an error naming its offset
        let mut bad = good.clone();
        let mid = WAL_HEADER_BYTES + rec0 + 20;
        bad[mid] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        let e = replay(&p, 3).unwrap_err().to_string();
        assert!(
            e.contains(&format!("byte offset {}", WAL_HEADER_BYTES + rec0))
                && e.contains("checksum mismatch"),
            "{e}"
        );
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bad,
            "a corrupt WAL must not be modified"
        );
        let _ = rec1;
        // a bad header
        let mut bad = good.clone();
        bad[13] ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert!(replay(&p, 3)
            .unwrap_err()
            .to_string()
            .contains("WAL header"));
        // wrong dimension
        std::fs::write(&p, &good).unwrap();
        assert!(replay(&p, 4).unwrap_err().to_string().contains("`dim` = 3"));
    }
}
