//! The merge's redo journal (docs/FORMAT.md, "merge.journal"; byte format in
//! [`ssdann_layout::journal`]): writing it ([`Journal`]) and reading a committed one back
//! ([`parse`]). Applying it and recovery at open are in `recover`.
//!
//! SQLite's pager rule: every rewritten block image is in the journal, and the journal is
//! fsynced with its commit entry, before the first byte of `index.ssd` is overwritten.
//!
//! Validation: [`ssdann_layout::journal::parse`] (the rules are written there).

use crate::error::EngineError;
use crate::storage::StorageRef;
use crate::Result;
pub(crate) use ssdann_layout::journal::CommitEntry;
pub use ssdann_layout::journal::JOURNAL_FILE;
use ssdann_layout::journal::{
    encode_commit_region, encode_entry, encode_header, COMMIT, ENTRY_HEAD_BYTES,
    JOURNAL_HEADER_BYTES,
};
use ssdann_layout::IndexHeader;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of journal or in-place writes after which their writeback is started.
pub(super) const WRITEBACK_SLICE_BYTES: u64 = 8 << 20;

/// Starts writeback of `len` bytes at `off` without waiting for it (sync_file_range,
/// SYNC_FILE_RANGE_WRITE), so that a merge's writes reach the disk in slices while it runs
/// instead of in one burst at its fsync — a burst that queues the searches' reads behind it.
/// Only a hint: durability still comes from the fsyncs; errors are ignored here.
pub(super) fn start_writeback(f: &std::fs::File, off: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on an open descriptor; no memory is passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// A journal being written: where the latest image of each block lies in it.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    pub(super) file: std::fs::File,
    storage: StorageRef,
    len: u64,
    pub(super) map: HashMap<u64, u64>,
    /// Bytes handed to writeback so far (see [`start_writeback`]).
    flushed: u64,
    pub(super) writes: u64,
    fail_after: Option<u64>,
}

pub(crate) fn injected(path: &Path, n: u64) -> EngineError {
    EngineError::io(
        path,
        std::io::Error::other(format!("injected fault after {n} writes")),
    )
}

impl Journal {
    /// Creates (truncating) the journal of a merge from header generation `base_generation`
    /// to an index of `blocks_after` blocks of `block_bytes` bytes.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub(super) fn create(
        dir: &Path,
        block_bytes: usize,
        base_generation: u64,
        blocks_after: u64,
        fail_after: Option<u64>,
        storage: StorageRef,
    ) -> Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let io = |e| EngineError::io(dir.join(JOURNAL_FILE), e);
        let file = storage.open_rw(&path, true, true).map_err(io)?;
        let head = encode_header(block_bytes as u32, base_generation, blocks_after);
        storage.write_at(&file, &path, &head, 0).map_err(io)?;
        Ok(Journal {
            path,
            file,
            storage,
            len: JOURNAL_HEADER_BYTES as u64,
            map: HashMap::new(),
            flushed: 0,
            writes: 0,
            fail_after,
        })
    }

    pub(super) fn tick(&mut self) -> Result<()> {
        self.writes += 1;
        match self.fail_after {
            Some(n) if self.writes > n => Err(injected(&self.path, n)),
            _ => Ok(()),
        }
    }

    /// Appends the entry for `block` (a block image; the commit goes through
    /// [`Journal::commit`]).
    ///
    /// # Errors
    /// [`EngineError::Io`] (or an injected fault).
    pub(super) fn append(&mut self, block: u64, image: &[u8]) -> Result<()> {
        debug_assert_ne!(
            block, COMMIT,
            "the commit entry is written by Journal::commit"
        );
        self.tick()?;
        let mut e = Vec::with_capacity(ENTRY_HEAD_BYTES + image.len());
        encode_entry(block, image, &mut e);
        self.storage
            .write_at(&self.file, &self.path, &e, self.len)
            .map_err(|err| EngineError::io(&self.path, err))?;
        if block != COMMIT {
            self.map.insert(block, self.len + ENTRY_HEAD_BYTES as u64);
        }
        self.len += e.len() as u64;
        if self.len - self.flushed >= WRITEBACK_SLICE_BYTES {
            start_writeback(&self.file, self.flushed, self.len - self.flushed);
            self.flushed = self.len;
        }
        Ok(())
    }

    /// fsyncs the block entries (before the commit entry is written), then the directory
    /// (the journal's own entry and the staged files').
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub(super) fn sync_entries(&self, dir: &Path) -> Result<()> {
        self.storage
            .sync(&self.file, &self.path, "journal.entries")
            .map_err(|e| EngineError::io(&self.path, e))?;
        self.storage
            .sync_dir(dir, "journal.dir")
            .map_err(|e| EngineError::io(dir, e))
    }

    /// Appends the commit region (format 4, [`encode_commit_region`]): the commit entry `c`
    /// (header slot, WAL sequence number S, the staged files' body CRCs, the new header slot
    /// image), twice, each copy in two sectors of its own, recording where the block entries
    /// end. Call after [`Journal::sync_entries`]; [`Journal::sync_commit`] then commits.
    ///
    /// # Errors
    /// [`EngineError::Io`] (or an injected fault).
    pub(crate) fn commit(&mut self, c: &CommitEntry) -> Result<()> {
        self.tick()?;
        let region = encode_commit_region(self.len, c);
        self.storage
            .write_at(&self.file, &self.path, &region, self.len)
            .map_err(|err| EngineError::io(&self.path, err))?;
        self.len += region.len() as u64;
        Ok(())
    }

    /// fsyncs the commit entry: from here on the merge is committed.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub(super) fn sync_commit(&self) -> Result<()> {
        self.storage
            .sync(&self.file, &self.path, "journal.commit")
            .map_err(|e| EngineError::io(&self.path, e))
    }

    /// Reads the latest image of `block` into `out`; false when the journal has none.
    ///
    /// # Errors
    /// [`EngineError::Io`].
    pub(super) fn read(&self, block: u64, out: &mut [u8]) -> Result<bool> {
        match self.map.get(&block) {
            Some(&off) => {
                self.file
                    .read_exact_at(out, off)
                    .map_err(|e| EngineError::io(&self.path, e))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

pub(crate) use ssdann_layout::journal::{CommittedJournal as Committed, ParsedJournal as Parsed};

/// Parses and validates the journal at `path` against the index's current header `cur`
/// ([`ssdann_layout::journal::parse`]).
///
/// # Errors
/// [`EngineError::Layout`] naming the file and the entry for a damaged committed journal,
/// or a journal that does not belong to this index; [`EngineError::Io`].
pub(crate) fn parse(path: &Path, cur: &IndexHeader) -> Result<Parsed> {
    let f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let total = f.metadata().map_err(|e| EngineError::io(path, e))?.len();
    Ok(ssdann_layout::journal::parse(path, &f, total, cur)?)
}

#[cfg(test)]
mod tests;
