//! Finishing a merge: applying a committed journal in place ([`apply`], idempotent — used by
//! a live merge and by recovery) and recovery at open ([`recover`]: finish a committed
//! journal, discard an uncommitted one, refuse a damaged committed one). Every write goes
//! through the index's [`Storage`].

use super::journal::{
    parse, start_writeback, Committed, Parsed, JOURNAL_FILE, WRITEBACK_SLICE_BYTES,
};
use crate::error::EngineError;
use crate::io::AlignedBuf;
use crate::storage::Storage;
use crate::Result;
use ssdann_builder::build::INDEX_FILE;
use ssdann_builder::{NoProgress, Phase, Progress};
use ssdann_layout::labels::LABELS_FILE;
use ssdann_layout::pq::PQ_CODES_FILE;
use ssdann_layout::sector::SECTOR_BYTES;
use ssdann_layout::IndexHeader;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Blocks written per hold of the file's gate while a live merge applies its journal
/// (page-cache writes: tens of µs per batch).
pub(super) const APPLY_BATCH_BLOCKS: usize = 32;

/// How a live merge applies its journal (recovery passes [`ApplyHooks::default`]).
#[derive(Default)]
pub(crate) struct ApplyHooks<'a> {
    /// Taken exclusively around each batch of block writes, so that concurrent searches
    /// never read a block mid-write.
    pub(crate) gate: Option<&'a parking_lot::RwLock<()>>,
    /// Test hook: sleep after each batch.
    pub(crate) pause: Option<std::time::Duration>,
}

/// Applies a committed journal in place and finishes the merge (idempotent): block images,
/// fsync, header slot, fsync, `*.merge` renames, directory fsync, WAL trimmed through S,
/// journal removal, directory fsync. `counter` runs before each write or file operation
/// (test hook: it may fail to stop the apply where a crash would).
///
/// # Errors
/// [`EngineError::Io`]; the journal stays, and the next open finishes the merge.
pub(crate) fn apply(
    dir: &Path,
    c: &Committed,
    storage: &dyn Storage,
    hooks: &ApplyHooks,
    progress: &dyn Progress,
    counter: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let path = dir.join(INDEX_FILE);
    let io = |e| EngineError::io(dir.join(INDEX_FILE), e);
    let f = storage.open_rw(&path, false, false).map_err(io)?;
    let h = &c.new_header;
    if f.metadata().map_err(io)?.len() < h.file_bytes() {
        storage.set_len(&f, &path, h.file_bytes()).map_err(io)?;
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
        let excl = hooks.gate.map(|g| g.write());
        for (k, &(&b, _)) in batch.iter().enumerate() {
            counter()?;
            storage
                .write_at(
                    &f,
                    &path,
                    &images[k * bb..(k + 1) * bb],
                    h.layout.block_offset_bytes(b),
                )
                .map_err(io)?;
        }
        drop(excl);
        written += batch.len() as u64 * bb as u64;
        if written >= WRITEBACK_SLICE_BYTES {
            start_writeback(&f, 0, 0); // 0, 0: every dirty page of the file so far
            written = 0;
        }
        if let Some(p) = hooks.pause {
            std::thread::sleep(p);
        }
    }
    progress.finish();
    // No fsync between the blocks and the header: one fsync of the file makes both durable,
    // and a crash before it leaves the committed journal, which recovery applies again
    // (the crash simulator shows a separate fsync here changes no outcome).
    counter()?;
    storage
        .write_at(&f, &path, &c.header, c.slot * SECTOR_BYTES as u64)
        .map_err(io)?;
    storage.sync(&f, &path, "apply.header").map_err(io)?;
    for name in [LABELS_FILE, PQ_CODES_FILE] {
        let staged = dir.join(format!("{name}.merge"));
        if staged.exists() {
            counter()?;
            storage
                .rename(&staged, &dir.join(name))
                .map_err(|e| EngineError::io(&staged, e))?;
        }
    }
    let wal = dir.join(crate::updates::wal::WAL_FILE);
    if wal.exists() {
        counter()?;
        // keeps the updates logged while the merge ran: they are replayed on the new state
        crate::updates::wal::trim(&wal, h.dim as usize, c.wal_seq, storage)?;
    }
    // One directory fsync for the renames (staged files, trimmed WAL): durable before the
    // journal's removal can be.
    storage
        .sync_dir(dir, "apply.rename.dir")
        .map_err(|e| EngineError::io(dir, e))?;
    counter()?;
    storage
        .remove(&jpath)
        .map_err(|e| EngineError::io(&jpath, e))?;
    // Durable before the next merge stages files under the same names: a journal that
    // reappeared after them would rename *their* staged files into place.
    storage
        .sync_dir(dir, "apply.remove.dir")
        .map_err(|e| EngineError::io(dir, e))
}

/// The header in force in `dir`'s `index.ssd` (the valid slot with the highest generation).
///
/// # Errors
/// [`EngineError::Io`], [`EngineError::Layout`].
pub(crate) fn current_header(dir: &Path) -> Result<IndexHeader> {
    let path = dir.join(INDEX_FILE);
    let f = std::fs::File::open(&path).map_err(|e| EngineError::io(&path, e))?;
    let mut two = AlignedBuf::new(2 * SECTOR_BYTES);
    f.read_exact_at(two.as_mut_slice(), 0)
        .map_err(|e| EngineError::io(&path, e))?;
    Ok(IndexHeader::choose(&path, two.as_slice())?.0)
}

/// Called by `Index::open` (read-write) before anything else: finishes a committed merge,
/// or discards an uncommitted one and its staged files (the index and the WAL are then
/// untouched). Returns whether a journal was found. A committed merge is finished only after
/// every input it acts on checks out — the journal, the label map and PQ codes it renames
/// into place (`*.merge`, or the final names once renamed: checksums, n, M, and from journal
/// format 4 the body CRCs its commit recorded), and the WAL it trims (every record before
/// the last valid) — so a refusal changes no file.
///
/// # Errors
/// [`EngineError::Layout`] naming the file (and the entry or offset) when the journal is
/// committed but damaged, belongs to another index, or has no valid commit while index.ssd's
/// header already carries its generation; when a staged or renamed file is damaged or not
/// the merge's; when the WAL is damaged before its last record — every file is then left
/// exactly as it was; [`EngineError::Io`].
pub fn recover(dir: &Path, storage: &dyn Storage) -> Result<bool> {
    let jp = dir.join(JOURNAL_FILE);
    if !jp.exists() {
        return Ok(false);
    }
    let cur = current_header(dir)?;
    match parse(&jp, &cur)? {
        Parsed::Committed(c) => {
            // Every input recovery acts on is checked before its first write, rename or
            // removal: the journal (parsed above), the files it renames into place, and the
            // WAL it trims. On any failure nothing has changed.
            ssdann_layout::journal::check_staged(dir, &c)?;
            let wal = dir.join(crate::updates::wal::WAL_FILE);
            if wal.exists() {
                crate::updates::wal::check(&wal, c.new_header.dim as usize)?;
            }
            log::warn!(
                "{}: finishing an interrupted merge ({} blocks)",
                dir.display(),
                c.blocks.len()
            );
            apply(
                dir,
                &c,
                storage,
                &ApplyHooks::default(),
                &NoProgress,
                &mut || Ok(()),
            )?;
        }
        Parsed::Uncommitted => {
            log::warn!(
                "{}: discarding an uncommitted merge journal; the index is as before the merge",
                dir.display()
            );
            for name in [LABELS_FILE, PQ_CODES_FILE] {
                let staged = dir.join(format!("{name}.merge"));
                if staged.exists() {
                    storage
                        .remove(&staged)
                        .map_err(|e| EngineError::io(&staged, e))?;
                }
            }
            storage.remove(&jp).map_err(|e| EngineError::io(&jp, e))?;
            storage
                .sync_dir(dir, "recover.discard.dir")
                .map_err(|e| EngineError::io(dir, e))?;
        }
    }
    Ok(true)
}
