//! The write-ahead log of updates (FreshDiskANN, Singh et al. 2021, §4: updates are durable
//! before they are applied to the in-memory delta index). docs/FORMAT.md, "wal.log".
//!
//! ```text
//! file header (32 bytes):
//!   0  8  magic "SSDWAL01"
//!   8  4  version (1)
//!  12  4  dim d
//!  16  8  first_seq: sequence number of the first record (0 stands for 1); a merge that
//!         folded records 1..=S into the index rewrites the log with the records after S
//!         and first_seq = S + 1 (see [`trim`])
//!  24  4  reserved (0)
//!  28  4  CRC32 of bytes 0..28
//! record (21 + payload bytes):
//!   0  4  payload_bytes P (0 for delete, 4d for insert)
//!   4  4  CRC32 of bytes 8 .. 21+P
//!   8  8  sequence number (the first record has first_seq; +1 per record)
//!  16  1  kind: 1 = insert, 2 = delete
//!  17  8  label (u64)            -- at offset 17, unaligned
//!  25  P  vector: d × f32 (insert only)
//! ```
//! (record offsets: length 4, crc 4, seq 8, kind 1, label 8 → 25-byte head.)
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
use crate::Result;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Magic of `wal.log`.
pub const WAL_MAGIC: [u8; 8] = *b"SSDWAL01";
/// Version of `wal.log`.
pub const WAL_VERSION: u32 = 1;
/// File name inside an index directory.
pub const WAL_FILE: &str = "wal.log";
/// Bytes of the file header.
pub const WAL_HEADER_BYTES: usize = 32;
/// Bytes of a record before its payload.
pub const RECORD_HEAD_BYTES: usize = 25;

/// When appended records are fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// fsync before `append` returns (default).
    #[default]
    Always,
    /// fsync from a background thread within this many milliseconds.
    Interval(u64),
    /// Never fsync; the OS writes the file back when it chooses.
    Never,
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            _ => s
                .strip_prefix("interval=")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(SyncMode::Interval)
                .ok_or_else(|| format!("unknown sync mode {s:?} (expected always, interval=MS with MS > 0, or never)")),
        }
    }
}

/// One logged update.
#[derive(Clone, Debug, PartialEq)]
pub enum WalOp {
    /// Insert (or replace) `label` with `vector` (d f32 values).
    Insert {
        /// External label.
        label: u64,
        /// The vector.
        vector: Vec<f32>,
    },
    /// Delete `label`.
    Delete {
        /// External label.
        label: u64,
    },
}

fn crc_err(path: &Path, offset: u64, detail: String) -> EngineError {
    EngineError::Inconsistent {
        path: path.into(),
        detail: format!("WAL record at byte offset {offset}: {detail}"),
    }
}

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

fn encode_header(dim: u32, first_seq: u64) -> [u8; WAL_HEADER_BYTES] {
    let mut h = [0u8; WAL_HEADER_BYTES];
    h[..8].copy_from_slice(&WAL_MAGIC);
    h[8..12].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&dim.to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

fn encode_record(seq: u64, op: &WalOp, out: &mut Vec<u8>) {
    let (kind, label, payload): (u8, u64, &[f32]) = match op {
        WalOp::Insert { label, vector } => (1, *label, vector),
        WalOp::Delete { label } => (2, *label, &[]),
    };
    let start = out.len();
    out.extend_from_slice(&((payload.len() * 4) as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&label.to_le_bytes());
    payload
        .iter()
        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads and validates `path`; truncates a torn tail (printing one warning line).
///
/// # Errors
/// - [`EngineError::Layout`] for a bad file header (magic, version, CRC, dimension ≠ `dim`).
/// - [`EngineError::Inconsistent`] naming the byte offset of a corrupt record, an unknown
///   kind, a wrong payload size or a sequence gap followed by more data.
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
    let corrupt = |what: &str, detail: String| -> EngineError {
        ssdann_layout::LayoutError::corrupt(path, what.to_string(), detail).into()
    };
    if bytes.len() < WAL_HEADER_BYTES {
        return Err(corrupt(
            "WAL header",
            format!(
                "file is {} bytes, shorter than the 32-byte header",
                bytes.len()
            ),
        ));
    }
    if bytes[..8] != WAL_MAGIC {
        return Err(corrupt("WAL header", "bad magic".into()));
    }
    let stored = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    let got = crc32fast::hash(&bytes[..28]);
    if stored != got {
        return Err(ssdann_layout::LayoutError::ChecksumMismatch {
            path: path.into(),
            what: "WAL header".into(),
            expected: stored,
            got,
        }
        .into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let fdim = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if version != WAL_VERSION {
        return Err(ssdann_layout::LayoutError::field(
            path,
            "version",
            version,
            "this build reads WAL version 1",
        )
        .into());
    }
    if fdim != dim {
        return Err(ssdann_layout::LayoutError::field(
            path,
            "dim",
            fdim,
            format!("the index has d = {dim}"),
        )
        .into());
    }
    let mut fs = [0u8; 8];
    fs.copy_from_slice(&bytes[16..24]);
    let first_seq = u64::from_le_bytes(fs).max(1);
    let mut rep = Replay {
        last_seq: first_seq - 1,
        ..Default::default()
    };
    let mut off = WAL_HEADER_BYTES;
    let len = bytes.len();
    let mut torn_at: Option<usize> = None;
    while off < len {
        let o = off as u64;
        if len - off < RECORD_HEAD_BYTES {
            torn_at = Some(off);
            break;
        }
        let payload =
            u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]])
                as usize;
        let end = off
            .checked_add(RECORD_HEAD_BYTES)
            .and_then(|x| x.checked_add(payload));
        let end = match end {
            Some(e) if e <= len => e,
            _ => {
                // Cut short by the end of the file: a torn append, never acknowledged.
                torn_at = Some(off);
                break;
            }
        };
        let stored = u32::from_le_bytes([
            bytes[off + 4],
            bytes[off + 5],
            bytes[off + 6],
            bytes[off + 7],
        ]);
        let got = crc32fast::hash(&bytes[off + 8..end]);
        if stored != got {
            if end == len {
                torn_at = Some(off);
                break;
            }
            return Err(crc_err(path, o, format!("checksum mismatch (stored {stored:#010x}, computed {got:#010x}) with {} more bytes after it: acknowledged updates may be lost; refusing to skip it", len - end)));
        }
        let mut seq_b = [0u8; 8];
        seq_b.copy_from_slice(&bytes[off + 8..off + 16]);
        let seq = u64::from_le_bytes(seq_b);
        if seq != rep.last_seq + 1 {
            return Err(crc_err(
                path,
                o,
                format!("sequence number {seq}, expected {}", rep.last_seq + 1),
            ));
        }
        let kind = bytes[off + 16];
        let mut lb = [0u8; 8];
        lb.copy_from_slice(&bytes[off + 17..off + 25]);
        let label = u64::from_le_bytes(lb);
        let op = match (kind, payload) {
            (1, p) if p == 4 * dim => WalOp::Insert {
                label,
                vector: bytes[off + 25..end]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            },
            (2, 0) => WalOp::Delete { label },
            (k, p) => {
                return Err(crc_err(
                    path,
                    o,
                    format!(
                        "kind {k} with a {p}-byte payload (insert needs {} bytes, delete 0)",
                        4 * dim
                    ),
                ))
            }
        };
        rep.ops.push(op);
        rep.last_seq = seq;
        off = end;
    }
    if let Some(t) = torn_at {
        rep.truncated_bytes = (len - t) as u64;
        if !truncate {
            return Ok(rep);
        }
        eprintln!("warning: {}: truncating a torn tail of {} bytes at offset {t} (an append that never completed)", path.display(), len - t);
        f.set_len(t as u64).map_err(io)?;
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
