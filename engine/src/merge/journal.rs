//! The merge's redo journal (docs/FORMAT.md, "merge.journal"; byte format in
//! [`ssdann_layout::journal`]): writing it ([`Journal`]), reading a committed one back
//! ([`parse`]), applying it in place ([`apply`]) and recovery at open ([`recover`]).
//!
//! SQLite's pager rule: every rewritten block image is in the journal, and the journal is
//! fsynced with its commit entry, before the first byte of `index.ssd` is overwritten; a
//! committed journal is applied idempotently, so a crash during the apply is finished by
//! the next open.

use crate::error::EngineError;
use crate::io::fsync_dir;
use crate::Result;
use ssdann_builder::build::INDEX_FILE;
use ssdann_builder::{NoProgress, Phase, Progress};
pub use ssdann_layout::journal::JOURNAL_FILE;
use ssdann_layout::journal::{
    decode_commit, decode_entry_head, decode_header, encode_entry, encode_header, entry_crc,
    COMMIT, ENTRY_HEAD_BYTES, JOURNAL_HEADER_BYTES,
};
use ssdann_layout::labels::LABELS_FILE;
use ssdann_layout::pq::PQ_CODES_FILE;
use ssdann_layout::sector::SECTOR_BYTES;
use ssdann_layout::IndexHeader;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
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

/// Blocks written per hold of the file's gate while a live merge applies its journal
/// (page-cache writes: tens of µs per batch).
pub(super) const APPLY_BATCH_BLOCKS: usize = 32;

/// A journal being written: where the latest image of each block lies in it.
pub(super) struct Journal {
    pub(super) path: PathBuf,
    pub(super) file: std::fs::File,
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
    pub(super) fn create(
        dir: &Path,
        block_bytes: usize,
        fail_after: Option<u64>,
    ) -> Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        file.write_all(&encode_header(block_bytes as u32))
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(Journal {
            path,
            file,
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

    pub(super) fn append(&mut self, block: u64, image: &[u8]) -> Result<()> {
        self.tick()?;
        let mut e = Vec::with_capacity(ENTRY_HEAD_BYTES + image.len());
        encode_entry(block, image, &mut e);
        self.file
            .write_all_at(&e, self.len)
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

/// A parsed, committed journal: where the latest image of each block lies in the journal
/// (CRCs checked while parsing; images are read again, block by block, when applied), and the
/// new header slot.
pub(crate) struct Committed {
    pub(super) blocks: BTreeMap<u64, u64>,
    block_bytes: usize,
    /// The last WAL sequence number the merge folded in (`u64::MAX`: all of them).
    wal_seq: u64,
    slot: u64,
    header: Vec<u8>,
}

/// Parses a journal; `None` when it was never committed (or is torn before the commit).
pub(super) fn parse(path: &Path) -> Result<Option<Committed>> {
    use std::io::Read;
    let io = |e| EngineError::io(path, e);
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let total = std::fs::metadata(path).map_err(io)?.len();
    let mut head = [0u8; JOURNAL_HEADER_BYTES];
    if total < JOURNAL_HEADER_BYTES as u64 || r.read_exact(&mut head).is_err() {
        return Ok(None);
    }
    let Some(jh) = decode_header(&head) else {
        return Ok(None);
    };
    let bb = jh.block_bytes;
    let mut off = JOURNAL_HEADER_BYTES as u64;
    let eh_len = ENTRY_HEAD_BYTES as u64;
    let mut blocks = BTreeMap::new();
    let mut image = vec![0u8; bb.max(jh.commit_bytes())];
    while off + eh_len <= total {
        let mut eh = [0u8; ENTRY_HEAD_BYTES];
        r.read_exact(&mut eh).map_err(io)?;
        let (block, stored) = decode_entry_head(&eh);
        let len = jh.image_bytes(block);
        if off + eh_len + len as u64 > total {
            return Ok(None); // torn tail: never committed
        }
        r.read_exact(&mut image[..len]).map_err(io)?;
        if entry_crc(block, &image[..len]) != stored {
            return Ok(None);
        }
        if block == COMMIT {
            let c = decode_commit(&jh, &image[..len]);
            return Ok(Some(Committed {
                blocks,
                block_bytes: bb,
                slot: c.slot,
                wal_seq: c.wal_seq,
                header: c.header,
            }));
        }
        blocks.insert(block, off + eh_len);
        off += eh_len + len as u64;
    }
    Ok(None)
}

/// Applies a committed journal in place and finishes the merge (idempotent): block images,
/// header slot, `*.merge` renames, WAL trimmed through S, journal removal.
/// With `gate` (a live merge), block writes go in batches of [`APPLY_BATCH_BLOCKS`], each
/// holding the gate exclusively, so that concurrent searches never read a block mid-write.
pub(crate) fn apply(
    dir: &Path,
    c: &Committed,
    gate: Option<&parking_lot::RwLock<()>>,
    pause: Option<std::time::Duration>,
    progress: &dyn Progress,
    counter: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::io(&path, e))?;
    let h = IndexHeader::decode(&path, c.slot as usize, &c.header)?;
    if f.metadata().map_err(|e| EngineError::io(&path, e))?.len() < h.file_bytes() {
        f.set_len(h.file_bytes())
            .map_err(|e| EngineError::io(&path, e))?;
    }
    let jpath = dir.join(JOURNAL_FILE);
    let journal = std::fs::File::open(&jpath).map_err(|e| EngineError::io(&jpath, e))?;
    let bb = c.block_bytes;
    let blocks: Vec<(&u64, &u64)> = c.blocks.iter().collect();
    let mut images = vec![0u8; APPLY_BATCH_BLOCKS * bb];
    let mut written = 0u64;
    progress.start(Phase::MergeApply, blocks.len() as u64);
    for batch in blocks.chunks(APPLY_BATCH_BLOCKS) {
        progress.advance(batch.len() as u64);
        for (k, &(_, &at)) in batch.iter().enumerate() {
            journal
                .read_exact_at(&mut images[k * bb..(k + 1) * bb], at)
                .map_err(|e| EngineError::io(&jpath, e))?;
        }
        let excl = gate.map(|g| g.write());
        for (k, &(&b, _)) in batch.iter().enumerate() {
            counter()?;
            f.write_all_at(
                &images[k * bb..(k + 1) * bb],
                h.layout.block_offset_bytes(b),
            )
            .map_err(|e| EngineError::io(&path, e))?;
        }
        drop(excl);
        written += batch.len() as u64 * bb as u64;
        if written >= WRITEBACK_SLICE_BYTES {
            start_writeback(&f, 0, 0); // 0, 0: every dirty page of the file so far
            written = 0;
        }
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
    }
    progress.finish();
    f.sync_all().map_err(|e| EngineError::io(&path, e))?;
    counter()?;
    f.write_all_at(&c.header, c.slot * SECTOR_BYTES as u64)
        .map_err(|e| EngineError::io(&path, e))?;
    f.sync_all().map_err(|e| EngineError::io(&path, e))?;
    for name in [LABELS_FILE, PQ_CODES_FILE] {
        let staged = dir.join(format!("{name}.merge"));
        if staged.exists() {
            counter()?;
            std::fs::rename(&staged, dir.join(name)).map_err(|e| EngineError::io(&staged, e))?;
        }
    }
    fsync_dir(dir)?;
    let wal = dir.join(crate::updates::wal::WAL_FILE);
    if wal.exists() {
        counter()?;
        // keeps the updates logged while the merge ran: they are replayed on the new state
        crate::updates::wal::trim(&wal, h.dim as usize, c.wal_seq)?;
    }
    counter()?;
    std::fs::remove_file(dir.join(JOURNAL_FILE))
        .map_err(|e| EngineError::io(dir.join(JOURNAL_FILE), e))?;
    fsync_dir(dir)
}

/// Called by `Index::open` before anything else: finishes a committed merge, or discards an
/// uncommitted one (the index and the WAL are then untouched). Returns whether a journal
/// was found.
///
/// # Errors
/// [`EngineError::Io`], or a corrupt header image in a committed journal.
pub fn recover(dir: &Path) -> Result<bool> {
    let jp = dir.join(JOURNAL_FILE);
    if !jp.exists() {
        return Ok(false);
    }
    match parse(&jp)? {
        Some(c) => {
            eprintln!(
                "note: {}: finishing an interrupted merge ({} blocks)",
                dir.display(),
                c.blocks.len()
            );
            apply(dir, &c, None, None, &NoProgress, &mut || Ok(()))?;
        }
        None => {
            eprintln!("note: {}: discarding an uncommitted merge journal; the index is as before the merge", dir.display());
            for name in [LABELS_FILE, PQ_CODES_FILE] {
                let staged = dir.join(format!("{name}.merge"));
                if staged.exists() {
                    std::fs::remove_file(&staged).map_err(|e| EngineError::io(&staged, e))?;
                }
            }
            std::fs::remove_file(&jp).map_err(|e| EngineError::io(&jp, e))?;
            fsync_dir(dir)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;

    fn journal_with_commit(dir: &Path) -> PathBuf {
        let mut j = Journal::create(dir, 4096, None).unwrap();
        j.append(7, &[7u8; 4096]).unwrap();
        j.append(3, &[3u8; 4096]).unwrap();
        j.append(7, &[9u8; 4096]).unwrap(); // supersedes the first image of block 7
        let mut commit = 1u64.to_le_bytes().to_vec();
        commit.extend_from_slice(&42u64.to_le_bytes());
        commit.extend_from_slice(&[5u8; SECTOR_BYTES]);
        j.append(COMMIT, &commit).unwrap();
        j.path
    }

    #[test]
    fn parse_finds_the_latest_image_of_each_block_and_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = journal_with_commit(tmp.path());
        let c = parse(&path).unwrap().unwrap();
        assert_eq!(
            (c.slot, c.block_bytes, c.header.len()),
            (1, 4096, SECTOR_BYTES)
        );
        let entry = 12 + 4096;
        assert_eq!(
            c.blocks.into_iter().collect::<Vec<_>>(),
            vec![(3, 16 + entry as u64 + 12), (7, 16 + 2 * entry as u64 + 12)]
        );
    }

    #[test]
    fn a_journal_of_format_1_is_still_finished_and_empties_the_wal() {
        let tmp = tempfile::tempdir().unwrap();
        let mut j = Journal::create(tmp.path(), 4096, None).unwrap();
        j.append(3, &[3u8; 4096]).unwrap();
        let mut commit = 0u64.to_le_bytes().to_vec(); // v1: slot, then the header image
        commit.extend_from_slice(&[5u8; SECTOR_BYTES]);
        j.append(COMMIT, &commit).unwrap();
        j.file
            .write_all_at(&ssdann_layout::journal::JOURNAL_MAGIC_V1, 0)
            .unwrap();
        let c = parse(&j.path).unwrap().unwrap();
        assert_eq!(
            (c.slot, c.wal_seq, c.header.len(), c.blocks.len()),
            (0, u64::MAX, SECTOR_BYTES, 1)
        );
    }

    #[test]
    fn a_torn_or_corrupt_journal_counts_as_uncommitted() {
        let tmp = tempfile::tempdir().unwrap();
        let path = journal_with_commit(tmp.path());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap(); // torn commit entry
        assert!(parse(&path).unwrap().is_none());
        let mut flipped = bytes.clone();
        flipped[16 + 12 + 4096 + 12 + 100] ^= 1; // one bit of block 3's image
        std::fs::write(&path, &flipped).unwrap();
        assert!(parse(&path).unwrap().is_none());
        std::fs::write(&path, b"not a journal").unwrap();
        assert!(parse(&path).unwrap().is_none());
    }
}
