//! The write-ahead log's I/O (FreshDiskANN, Singh et al. 2021, §4: updates are durable
//! before they are applied to the in-memory delta index): appending with group commit,
//! replay on open, and trimming after a merge. The byte format and its validation rules are
//! [`ssdann_layout::wal`] (docs/FORMAT.md, "wal.log"); every write goes through the index's
//! [`Storage`].
//!
//! Replay keeps every complete group (one `append`: one write, one fsync). Only a torn last
//! group — one that no valid record of a later group follows — is truncated, with a warning:
//! it was never acknowledged. A damaged record followed by a later group's valid record is
//! an error naming its byte offset, and the file is left exactly as it was.
//!
//! Durability (`SyncMode`): `Always` fsyncs every append (group commit: one fsync per
//! `append` call, however many records it carries) — an acknowledged update survives any
//! crash. `Interval(ms)` fsyncs from a background thread at most `ms` after an append — a
//! machine crash (power loss, kernel panic) can lose the updates of the last `ms`
//! milliseconds; a process crash loses nothing (the bytes are in the page cache). A failed
//! background fsync poisons the log: the next append returns the error. `Never` leaves
//! flushing to the OS — a process crash loses nothing, a machine crash can lose every
//! update since the OS last wrote the file back (typically up to ~30 s). In the `Interval`
//! and `Never` modes a power loss can also reorder unsynced groups; open then refuses the
//! log (naming the offset) rather than guess which of them were acknowledged.
//!
//! A failed append (write or fsync) **poisons** the handle: its bytes may be half on disk, so
//! every later append is refused until the index is reopened (replay decides what survived).

use crate::error::EngineError;
pub use crate::options::SyncMode;
use crate::storage::{Storage, StorageRef};
use crate::Result;
use ssdann_layout::wal::{encode_group, encode_header, scan, MAX_SEQ};
pub use ssdann_layout::wal::{
    WalOp, RECORD_HEAD_BYTES, WAL_FILE, WAL_HEADER_BYTES, WAL_MAGIC, WAL_VERSION,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Most records one append may carry (a group's length is a u32 in the format; this bound
/// also caps the buffer one append allocates).
pub const MAX_GROUP_RECORDS: usize = 1 << 20;

/// What replay found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    /// Every valid record's operation, in order.
    pub ops: Vec<WalOp>,
    /// Sequence number of the last valid record (first_seq − 1 when there is none).
    pub last_seq: u64,
    /// Bytes of torn tail that were cut off (0 when the file ended cleanly).
    pub truncated_bytes: u64,
    /// The log's format version (1: rewritten as 2 before the next append).
    pub version: u32,
    /// The log's header never became durable (a crash while it was created): the whole
    /// file is the torn tail, and replay empties it (the next append writes a new header).
    pub header_torn: bool,
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| EngineError::io(path, e))?;
    Ok(bytes)
}

/// Reads and validates `path`; truncates a torn last group (printing one warning line) through
/// `storage`.
///
/// # Errors
/// - [`EngineError::Layout`] for a bad file header (magic, version, CRC, dimension ≠ `dim`),
///   and, naming the byte offset, a damaged record that a later group's valid record follows.
/// - [`EngineError::Io`].
pub fn replay(path: &Path, dim: usize, storage: &dyn Storage) -> Result<Replay> {
    let rep = check(path, dim)?;
    if rep.truncated_bytes > 0 {
        let io = |e| EngineError::io(path, e);
        let len = std::fs::metadata(path).map_err(io)?.len();
        let keep = len - rep.truncated_bytes;
        log::warn!("{}: truncating a torn tail of {} bytes at offset {keep} (an append that never completed)", path.display(), rep.truncated_bytes);
        let f = storage.open_rw(path, false, false).map_err(io)?;
        storage.set_len(&f, path, keep).map_err(io)?;
        storage.sync(&f, path, "wal.truncate").map_err(io)?;
    }
    Ok(rep)
}

/// Like [`replay`], but never modifies the file (read-only opens, `ssdann verify`): a torn
/// tail is only reported in [`Replay::truncated_bytes`].
///
/// # Errors
/// As [`replay`].
pub fn check(path: &Path, dim: usize) -> Result<Replay> {
    let bytes = read_all(path)?;
    let s = scan(path, &bytes, dim)?;
    Ok(Replay {
        ops: s.ops,
        last_seq: s.last_seq,
        truncated_bytes: s.torn_bytes,
        version: s.version,
        header_torn: s.header_torn,
    })
}

/// Writes a new log at `path` holding `ops` with sequence numbers `base`, `base + 1`, …
/// (first_seq = `base`; 0 stands for 1), each record its own group, through a temporary file
/// that is fsynced and renamed over `path`: all or nothing. With `dir_site`, the directory is
/// fsynced too (else the caller does it).
fn rewrite(
    path: &Path,
    dim: usize,
    base: u64,
    ops: &[WalOp],
    storage: &dyn Storage,
    dir_site: Option<&'static str>,
) -> Result<()> {
    let mut bytes = encode_header(dim as u32, base).to_vec();
    for (i, op) in ops.iter().enumerate() {
        encode_group(base.max(1) + i as u64, std::slice::from_ref(op), &mut bytes);
    }
    let tmp = path.with_extension("log.trim");
    let tio = |e| EngineError::io(&tmp, e);
    let f = storage.open_rw(&tmp, true, true).map_err(tio)?;
    storage.write_at(&f, &tmp, &bytes, 0).map_err(tio)?;
    storage.sync(&f, &tmp, "wal.rewrite").map_err(tio)?;
    storage
        .rename(&tmp, path)
        .map_err(|e| EngineError::io(path, e))?;
    if let (Some(parent), Some(site)) = (path.parent(), dir_site) {
        storage
            .sync_dir(parent, site)
            .map_err(|e| EngineError::io(parent, e))?;
    }
    Ok(())
}

/// Drops the records with sequence numbers ≤ `through` (a merge folded them into the index):
/// rewrites the log as a new file holding the later records (first_seq = `through` + 1),
/// fsyncs it and renames it over `path`. Idempotent: a version-2 log whose records all come
/// after `through` is left alone. `through = u64::MAX` empties the log (first_seq back to 1).
/// A torn tail is dropped (it was never acknowledged). Returns the records kept. The
/// directory is **not** fsynced: the caller (a merge's apply) fsyncs it once for this
/// rename and its own.
///
/// # Errors
/// As [`replay`] (a damaged record in the middle is an error, never skipped), and
/// [`EngineError::Io`].
pub fn trim(path: &Path, dim: usize, through: u64, storage: &dyn Storage) -> Result<usize> {
    let rep = check(path, dim)?;
    let first = rep.last_seq + 1 - rep.ops.len() as u64;
    if through != u64::MAX && first > through && rep.truncated_bytes == 0 && rep.version == 2 {
        return Ok(rep.ops.len());
    }
    let (base, kept) = if through == u64::MAX {
        (0, &rep.ops[..0])
    } else {
        let skip = through.saturating_sub(first - 1).min(rep.ops.len() as u64) as usize;
        (through.max(first - 1) + 1, &rep.ops[skip..])
    };
    rewrite(path, dim, base, kept, storage, None)?;
    Ok(kept.len())
}

/// Rewrites a version-1 log as version 2 (same records and sequence numbers) so that appends
/// never mix the two record formats. A no-op for a version-2 log.
///
/// # Errors
/// As [`trim`].
pub fn upgrade(path: &Path, dim: usize, storage: &dyn Storage) -> Result<()> {
    let rep = check(path, dim)?;
    if rep.version == 2 {
        return Ok(());
    }
    let first = rep.last_seq + 1 - rep.ops.len() as u64;
    rewrite(path, dim, first, &rep.ops, storage, Some("wal.upgrade.dir"))
}

struct Shared {
    file: std::fs::File,
    /// Bytes in the file: where the next append goes.
    len: u64,
    next_seq: u64,
    dirty: bool,
    closed: bool,
    /// Why appends are refused (a failed write or fsync, here or in the flusher).
    poisoned: Option<String>,
}

/// An open WAL, appending. Cheap to share behind the index's update lock.
pub struct Wal {
    path: PathBuf,
    mode: SyncMode,
    storage: StorageRef,
    state: Arc<(Mutex<Shared>, Condvar)>,
    buf: Vec<u8>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Wal {
    /// Opens (creating it with a header when absent) the WAL at `path` for appending after
    /// sequence number `last_seq` (from [`replay`], which must have run: the file must end
    /// after its last valid record). A version-1 log is first rewritten as version 2.
    ///
    /// # Errors
    /// [`EngineError::Io`]; the errors of [`upgrade`].
    pub fn open(
        path: &Path,
        dim: usize,
        last_seq: u64,
        mode: SyncMode,
        storage: StorageRef,
    ) -> Result<Wal> {
        let io = |e| EngineError::io(path, e);
        let exists = path.exists();
        if exists && std::fs::metadata(path).map_err(io)?.len() > 0 {
            upgrade(path, dim, &*storage)?;
        }
        let file = storage.open_rw(path, true, false).map_err(io)?;
        let mut len = file.metadata().map_err(io)?.len();
        if len == 0 {
            let head = encode_header(dim as u32, 0);
            storage.write_at(&file, path, &head, 0).map_err(io)?;
            storage.sync(&file, path, "wal.create").map_err(io)?;
            if let Some(parent) = path.parent() {
                storage
                    .sync_dir(parent, "wal.create.dir")
                    .map_err(|e| EngineError::io(parent, e))?;
            }
            len = head.len() as u64;
        }
        let state = Arc::new((
            Mutex::new(Shared {
                file,
                len,
                next_seq: last_seq + 1,
                dirty: false,
                closed: false,
                poisoned: None,
            }),
            Condvar::new(),
        ));
        let flusher = match mode {
            SyncMode::Interval(ms) => {
                let st = state.clone();
                let (p, s) = (path.to_path_buf(), storage.clone());
                Some(std::thread::spawn(move || {
                    flush_loop(&st, Duration::from_millis(ms), &p, &*s)
                }))
            }
            _ => None,
        };
        Ok(Wal {
            path: path.into(),
            mode,
            storage,
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

    /// Appends `ops` (1 ..= [`MAX_GROUP_RECORDS`]) as one group: consecutive records in one
    /// write (and, in `Always` mode, one fsync: group commit). Returns the sequence number of
    /// the last one.
    ///
    /// # Errors
    /// [`EngineError::Io`] — after which the handle is poisoned and refuses every later
    /// append (reopen the index: replay decides what survived); [`EngineError::InvalidQuery`]
    /// for an empty or oversized group (nothing written, not poisoned).
    pub fn append(&mut self, ops: &[WalOp]) -> Result<u64> {
        if ops.is_empty() || ops.len() > MAX_GROUP_RECORDS {
            return Err(EngineError::InvalidQuery {
                field: "batch size",
                value: ops.len().to_string(),
                reason: format!("one append carries 1..={MAX_GROUP_RECORDS} records"),
            });
        }
        let path = &self.path;
        let (lock, _) = &*self.state;
        let mut g = lock
            .lock()
            .map_err(|_| EngineError::io(path, std::io::Error::other("WAL lock poisoned")))?;
        if let Some(why) = &g.poisoned {
            return Err(EngineError::io(
                path,
                std::io::Error::other(format!(
                    "the WAL refuses appends after an earlier failure ({why}); reopen the index"
                )),
            ));
        }
        let first = g.next_seq;
        if first + ops.len() as u64 >= MAX_SEQ {
            return Err(EngineError::Inconsistent {
                path: path.clone(),
                detail: format!("WAL sequence numbers would pass {MAX_SEQ}"),
            });
        }
        self.buf.clear();
        encode_group(first, ops, &mut self.buf);
        let at = g.len;
        let r = self
            .storage
            .write_at(&g.file, path, &self.buf, at)
            .and_then(|()| match self.mode {
                SyncMode::Always => self.storage.sync(&g.file, path, "wal.append"),
                _ => Ok(()),
            });
        if let Err(e) = r {
            g.poisoned = Some(e.to_string());
            return Err(EngineError::io(path, e));
        }
        g.len += self.buf.len() as u64;
        g.next_seq += ops.len() as u64;
        if let SyncMode::Interval(_) = self.mode {
            g.dirty = true;
        }
        Ok(g.next_seq - 1)
    }
}

fn flush_loop(
    state: &(Mutex<Shared>, Condvar),
    every: Duration,
    path: &Path,
    storage: &dyn Storage,
) {
    let (lock, cv) = state;
    let Ok(mut g) = lock.lock() else { return };
    loop {
        let Ok((ng, _)) = cv.wait_timeout(g, every) else {
            return;
        };
        g = ng;
        if g.dirty {
            if let Err(e) = storage.sync(&g.file, path, "wal.interval") {
                // the bytes since the last good fsync may be lost: refuse later appends
                log::error!("{}: background fsync failed: {e}", path.display());
                g.poisoned = Some(format!("background fsync failed: {e}"));
            }
            g.dirty = false;
        }
        if g.closed {
            return;
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut g) = lock.lock() {
            g.closed = true;
            if g.dirty && g.poisoned.is_none() {
                if let Err(e) = self.storage.sync(&g.file, &self.path, "wal.close") {
                    log::error!("{}: fsync at close failed: {e}", self.path.display());
                }
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
mod tests;
