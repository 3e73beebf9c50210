//! The merge's redo journal (docs/FORMAT.md, "merge.journal"; byte format in
//! [`ssdann_layout::journal`]): writing it ([`Journal`]) and reading a committed one back
//! ([`parse`]). Applying it and recovery at open are in `recover`.
//!
//! SQLite's pager rule: every rewritten block image is in the journal, and the journal is
//! fsynced with its commit entry, before the first byte of `index.ssd` is overwritten.
//!
//! Validation ([`parse`]) — recovery refuses, never guesses. The header must match the index
//! (block size; format 3: the generation the merge started from, and a bound on every block
//! number); every entry's CRC must hold and its block number must lie inside the index the
//! commit describes; the commit entry's header image must decode, keep the index's shape and
//! advance its generation by one. The block entries are fsynced before the commit entry is
//! written, and the commit entry is written twice (two copies, one write, one fsync): a
//! valid copy therefore proves every entry before it was durable, and a copy damaged on the
//! medium is survivable. A journal with a valid commit copy and any damage before it is an
//! error naming the file and the entry, and nothing is changed. A journal with no valid
//! commit copy is uncommitted: its merge stopped before the commit fsync returned, so no
//! byte of `index.ssd` was overwritten, and recovery discards it.

use crate::error::EngineError;
use crate::storage::StorageRef;
use crate::Result;
pub use ssdann_layout::journal::JOURNAL_FILE;
use ssdann_layout::journal::{
    decode_commit, decode_entry_head, decode_header, encode_entry, encode_header, entry_crc,
    HeaderError, JournalHeader, COMMIT, ENTRY_HEAD_BYTES, JOURNAL_HEADER_BYTES,
};
use ssdann_layout::sector::SECTOR_BYTES;
use ssdann_layout::IndexHeader;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
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

    /// Appends the entry for `block` (or the commit entry, `block` = [`COMMIT`]).
    ///
    /// # Errors
    /// [`EngineError::Io`] (or an injected fault).
    pub(super) fn append(&mut self, block: u64, image: &[u8]) -> Result<()> {
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

/// A parsed, validated, committed journal: where the latest image of each block lies in the
/// journal (CRCs checked while parsing; images are read again, block by block, when
/// applied), and the new header slot.
pub(crate) struct Committed {
    pub(crate) blocks: BTreeMap<u64, u64>,
    pub(crate) block_bytes: usize,
    /// The last WAL sequence number the merge folded in (`u64::MAX`: all of them).
    pub(crate) wal_seq: u64,
    /// Header slot (0 or 1) the new header goes to.
    pub(crate) slot: u64,
    /// The new header slot image (4096 bytes), and its decoded form.
    pub(crate) header: Vec<u8>,
    pub(crate) new_header: IndexHeader,
}

/// What [`parse`] found.
pub(crate) enum Parsed {
    /// A valid, committed journal: finish it.
    Committed(Committed),
    /// No valid commit entry: a merge that stopped before its commit fsync returned.
    Uncommitted,
}

fn damaged(path: &Path, what: String) -> EngineError {
    ssdann_layout::LayoutError::corrupt(path, "merge journal", what).into()
}

/// Where a valid commit entry lies among the last two entry positions of the file (the
/// commit is always last, written twice from format 3), if one does.
fn tail_commit(f: &std::fs::File, total: u64) -> Option<u64> {
    for commit_len in [16 + SECTOR_BYTES, 8 + SECTOR_BYTES] {
        let n = (ENTRY_HEAD_BYTES + commit_len) as u64;
        for copies in [1, 2] {
            let Some(at) = total.checked_sub(copies * n) else {
                continue;
            };
            let mut e = vec![0u8; n as usize];
            if f.read_exact_at(&mut e, at).is_err() {
                continue;
            }
            let mut eh = [0u8; ENTRY_HEAD_BYTES];
            eh.copy_from_slice(&e[..ENTRY_HEAD_BYTES]);
            let (block, stored) = decode_entry_head(&eh);
            if block == COMMIT && entry_crc(block, &e[ENTRY_HEAD_BYTES..]) == stored {
                return Some(at);
            }
        }
    }
    None
}

/// Checks a commit entry's new header against the index's current one (`cur`) and the
/// journal header.
fn check_commit(
    path: &Path,
    jh: &JournalHeader,
    cur: &IndexHeader,
    slot: u64,
    new: &IndexHeader,
) -> std::result::Result<(), String> {
    if slot > 1 {
        return Err(format!("header slot {slot} (0 or 1)"));
    }
    let same_shape = new.dim == cur.dim
        && new.element == cur.element
        && new.metric == cur.metric
        && new.max_degree == cur.max_degree
        && new.layout == cur.layout
        && new.pq_m == cur.pq_m;
    if !same_shape {
        return Err(
            "its header changes the index's shape (d, type, metric, R, layout or M)".into(),
        );
    }
    // the live index is either still before the merge (generation g) or already flipped (g + 1)
    let base = jh.base_generation.unwrap_or(new.generation.wrapping_sub(1));
    if base.checked_add(1) != Some(new.generation)
        || (cur.generation != base && cur.generation != new.generation)
    {
        return Err(format!(
            "its header has generation {} for a merge from {base}, but index.ssd is at generation {}",
            new.generation, cur.generation
        ));
    }
    let blocks = new.layout.blocks_for(new.n_slots);
    if let Some(after) = jh.blocks_after {
        if blocks != after {
            return Err(format!(
                "its header has {blocks} blocks, the journal header {after}"
            ));
        }
    }
    let _ = path;
    Ok(())
}

/// Parses and validates the journal at `path` against the index's current header `cur`
/// (see the module docs).
///
/// # Errors
/// [`EngineError::Layout`] naming the file and the entry for a damaged committed journal,
/// or a journal that does not belong to this index; [`EngineError::Io`].
pub(crate) fn parse(path: &Path, cur: &IndexHeader) -> Result<Parsed> {
    let io = |e| EngineError::io(path, e);
    let f = std::fs::File::open(path).map_err(io)?;
    let total = f.metadata().map_err(io)?.len();
    let bb_now = cur.layout.block_bytes();
    let mut head = vec![0u8; JOURNAL_HEADER_BYTES.min(total as usize)];
    f.read_exact_at(&mut head, 0).map_err(io)?;
    let jh = match decode_header(&head) {
        Ok(h) => h,
        Err(e) => {
            return match (e, tail_commit(&f, total)) {
                (_, Some(at)) => Err(damaged(
                    path,
                    format!("the header is unreadable but a valid commit entry lies at byte offset {at}: a committed journal is damaged; refusing to recover or delete it"),
                )),
                (HeaderError::NotAJournal, None) | (HeaderError::Damaged(_), None) => {
                    Ok(Parsed::Uncommitted)
                }
            };
        }
    };
    if jh.block_bytes != bb_now {
        return Err(damaged(
            path,
            format!("header block_bytes = {} but index.ssd's blocks are {bb_now} bytes: not this index's journal", jh.block_bytes),
        ));
    }
    if let Some(g) = jh.base_generation {
        if g != cur.generation && g.checked_add(1) != Some(cur.generation) {
            return Err(damaged(
                path,
                format!("header base_generation = {g} but index.ssd is at generation {}: not this index's journal", cur.generation),
            ));
        }
    }
    let mut r = std::io::BufReader::with_capacity(1 << 20, &f);
    let mut skip = vec![0u8; jh.header_bytes];
    r.read_exact(&mut skip).map_err(io)?;
    let mut off = jh.header_bytes as u64;
    let eh_len = ENTRY_HEAD_BYTES as u64;
    let mut blocks = BTreeMap::new();
    let mut image = vec![0u8; jh.block_bytes.max(jh.commit_bytes())];
    let block_limit = jh.blocks_after.unwrap_or(u64::MAX);
    // The first bad entry, if any: (offset, what is wrong).
    let bad: (u64, String) = loop {
        if off == total {
            break (off, "the file ends before a commit entry".into());
        }
        if off + eh_len > total {
            break (off, "an entry cut short by the end of the file".into());
        }
        let mut eh = [0u8; ENTRY_HEAD_BYTES];
        r.read_exact(&mut eh).map_err(io)?;
        let (block, stored) = decode_entry_head(&eh);
        if block != COMMIT && block >= block_limit {
            break (
                off,
                format!("block {block} ≥ the {block_limit} blocks the merge writes"),
            );
        }
        let len = jh.image_bytes(block);
        if off + eh_len + len as u64 > total {
            break (off, "an entry cut short by the end of the file".into());
        }
        r.read_exact(&mut image[..len]).map_err(io)?;
        if entry_crc(block, &image[..len]) != stored {
            break (
                off,
                format!("the entry for block {block} fails its checksum"),
            );
        }
        if block == COMMIT {
            let end = off + eh_len + len as u64;
            let copy_len = eh_len + len as u64;
            // formats 1, 2: one copy; format 3: a second copy follows (valid and equal, or
            // damaged: the first copy is the commit)
            // (a second copy cut short is a torn write of it: the first copy commits)
            if end != total && !(jh.version == 3 && total - end <= copy_len) {
                break (
                    end,
                    format!("{} bytes follow the commit entry", total - end),
                );
            }
            if end + copy_len == total {
                let mut second = vec![0u8; copy_len as usize];
                f.read_exact_at(&mut second, end).map_err(io)?;
                let mut eh2 = [0u8; ENTRY_HEAD_BYTES];
                eh2.copy_from_slice(&second[..ENTRY_HEAD_BYTES]);
                let (b2, crc2) = decode_entry_head(&eh2);
                let valid = b2 == COMMIT && entry_crc(b2, &second[ENTRY_HEAD_BYTES..]) == crc2;
                if valid && second[ENTRY_HEAD_BYTES..] != image[..len] {
                    break (end, "the two copies of the commit entry differ".into());
                }
            }
            return commit(path, &jh, cur, off, &image[..len], blocks);
        }
        blocks.insert(block, off + eh_len);
        off += eh_len + len as u64;
    };
    if let Some(at) = tail_commit(&f, total) {
        // the first copy of the commit is damaged and the second, right after it, is valid
        let copy_len = (ENTRY_HEAD_BYTES + jh.commit_bytes()) as u64;
        if jh.version == 3 && bad.0 + copy_len == at {
            let mut second = vec![0u8; copy_len as usize];
            f.read_exact_at(&mut second, at).map_err(io)?;
            return commit(path, &jh, cur, at, &second[ENTRY_HEAD_BYTES..], blocks);
        }
        return Err(damaged(
            path,
            format!("entry at byte offset {}: {}; a valid commit entry lies at byte offset {at}: a committed journal is damaged; refusing to recover or delete it", bad.0, bad.1),
        ));
    }
    Ok(Parsed::Uncommitted)
}

/// Validates the commit entry (image `image`, at byte offset `off`) and returns the
/// committed journal.
fn commit(
    path: &Path,
    jh: &JournalHeader,
    cur: &IndexHeader,
    off: u64,
    image: &[u8],
    blocks: BTreeMap<u64, u64>,
) -> Result<Parsed> {
    let c = decode_commit(jh, image);
    let new = IndexHeader::decode(path, (c.slot & 1) as usize, &c.header)
        .map_err(|e| damaged(path, format!("the commit entry at byte offset {off}: {e}")))?;
    check_commit(path, jh, cur, c.slot, &new).map_err(|why| {
        damaged(
            path,
            format!("the commit entry at byte offset {off}: {why}"),
        )
    })?;
    let nb = new.layout.blocks_for(new.n_slots);
    if let Some((&b, _)) = blocks.range(nb..).next() {
        return Err(damaged(
            path,
            format!("an entry for block {b} lies past the {nb} blocks of the committed index"),
        ));
    }
    Ok(Parsed::Committed(Committed {
        blocks,
        block_bytes: jh.block_bytes,
        wal_seq: c.wal_seq,
        slot: c.slot,
        header: c.header,
        new_header: new,
    }))
}

#[cfg(test)]
mod tests;
