//! StreamingMerge (FreshDiskANN, Singh et al. 2021, §4): folds the delta index and the
//! tombstones into `index.ssd` **in place**, crash-safely, and trims the WAL of what it folded in.
//!
//! Phases (memory ∝ the change set: deleted nodes' lists, new points, back-edges, and an
//! offset per rewritten block):
//! 1. **Delete**: the deleted nodes' out-lists are read; one sequential pass over the sector
//!    file gives every node with a deleted out-neighbour the neighbours of those neighbours as
//!    candidates, RobustPrune (Alg. 2) picks ≤ R (candidate vectors from their PQ codes, the
//!    node's own from its sector).
//! 2. **Insert**: each new point runs the disk beam search on the pre-merge index (tombstones
//!    still route, as FreshDiskANN allows) and the delta graph for its candidates;
//!    RobustPrune picks its out-list; back-edges are collected in memory. New points take
//!    freed slots first, then grow the file.
//! 3. **Patch**: every node that received back-edges gets them, pruned to R on overflow.
//!
//! Crash safety (docs/FORMAT.md, "merge.journal"): every rewritten block image is appended to
//! a redo journal; the new label map and PQ codes go to `*.merge` files; a commit entry with
//! the new header slot image and the last WAL sequence number S folded in closes the journal,
//! which is fsynced **before the first byte of `index.ssd` is overwritten** (SQLite's pager
//! rule). Then the images are written in place, the header flips to the other slot, the
//! `*.merge` files are renamed, the WAL is trimmed through S (updates logged during the merge
//! stay) and the journal deleted. `Index::open` finishes a committed journal (idempotently)
//! and discards an uncommitted one, so a crash at any point leaves either the pre-merge index
//! plus the WAL, or the post-merge index plus the updates logged after S.

use crate::error::EngineError;
use crate::index::{Index, Snapshot};
use crate::io::{fsync_dir, AlignedBuf};
use crate::Result;
use rayon::prelude::*;
use ssdann_builder::build::INDEX_FILE;
use ssdann_builder::robust_prune::{robust_prune, PruneScratch, DEFAULT_MAX_CANDIDATES};
use ssdann_builder::{NoProgress, Phase, Progress};
use ssdann_layout::distance::{l2_sq_f32, l2_sq_f32_bounded};
use ssdann_layout::labels::{write_labels_with, FREE_LABEL, LABELS_FILE};
use ssdann_layout::pq::{write_codes_with, PQ_CODES_FILE};
use ssdann_layout::sector::{seal_block, SECTOR_BYTES};
use ssdann_layout::{ElementType, IndexHeader, Metric};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// File name of the redo journal inside an index directory.
pub const JOURNAL_FILE: &str = "merge.journal";
const JOURNAL_MAGIC: [u8; 8] = *b"SSDMJRN2";
/// Journals written before the commit entry carried the WAL sequence number (their merges
/// emptied the whole WAL); still finished on open.
const JOURNAL_MAGIC_V1: [u8; 8] = *b"SSDMJRN1";
const COMMIT: u64 = u64::MAX;
/// Replacement candidates taken from each deleted out-neighbour's list in the delete phase.
const DELETE_CANDIDATES_PER_NODE: usize = 24;
/// Bytes of journal or in-place writes after which their writeback is started.
const WRITEBACK_SLICE_BYTES: u64 = 8 << 20;

/// Starts writeback of `len` bytes at `off` without waiting for it (sync_file_range,
/// SYNC_FILE_RANGE_WRITE), so that a merge's writes reach the disk in slices while it runs
/// instead of in one burst at its fsync — a burst that queues the searches' reads behind it.
/// Only a hint: durability still comes from the fsyncs; errors are ignored here.
fn start_writeback(f: &std::fs::File, off: u64, len: u64) {
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
const APPLY_BATCH_BLOCKS: usize = 32;

/// Merge options.
#[derive(Clone, Debug, Default)]
pub struct MergeOptions {
    /// Test hook: fail (as a crash would stop) after this many journal appends, in-place
    /// block writes and file operations.
    pub fail_after_writes: Option<u64>,
    /// Test hook: sleep this long after each batch of in-place block writes, so that tests
    /// can search an index whose journal is half applied.
    pub apply_pause: Option<std::time::Duration>,
    /// Test hook: sleep this long after freezing the updates to fold in, before computing,
    /// so that tests can insert and delete while a merge runs.
    pub prepare_pause: Option<std::time::Duration>,
}

/// What a merge did.
#[derive(Clone, Debug, Default)]
pub struct MergeReport {
    /// Points removed.
    pub deleted: usize,
    /// Points added.
    pub inserted: usize,
    /// Nodes whose lists the delete phase rewrote.
    pub repaired: usize,
    /// Blocks rewritten in place.
    pub blocks_written: usize,
    /// Writes before the in-place phase: journal entries (a block changed by two phases is
    /// appended twice, plus the commit) and the two staged files.
    pub journal_writes: u64,
    /// Slots after the merge.
    pub n_slots: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Seconds per phase: delete, insert, patch, stage + commit, apply in place.
    pub phase_seconds: [f64; 5],
}

struct Journal {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
    map: HashMap<u64, u64>,
    /// Bytes handed to writeback so far (see [`start_writeback`]).
    flushed: u64,
    writes: u64,
    fail_after: Option<u64>,
}

fn injected(path: &Path, n: u64) -> EngineError {
    EngineError::io(
        path,
        std::io::Error::other(format!("injected fault after {n} writes")),
    )
}

impl Journal {
    fn create(dir: &Path, block_bytes: usize, fail_after: Option<u64>) -> Result<Journal> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        let mut head = JOURNAL_MAGIC.to_vec();
        head.extend_from_slice(&(block_bytes as u32).to_le_bytes());
        head.extend_from_slice(&[0u8; 4]);
        file.write_all(&head)
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(Journal {
            path,
            file,
            len: 16,
            map: HashMap::new(),
            flushed: 0,
            writes: 0,
            fail_after,
        })
    }

    fn tick(&mut self) -> Result<()> {
        self.writes += 1;
        match self.fail_after {
            Some(n) if self.writes > n => Err(injected(&self.path, n)),
            _ => Ok(()),
        }
    }

    fn append(&mut self, block: u64, image: &[u8]) -> Result<()> {
        self.tick()?;
        let mut e = Vec::with_capacity(12 + image.len());
        e.extend_from_slice(&block.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&block.to_le_bytes());
        h.update(image);
        e.extend_from_slice(&h.finalize().to_le_bytes());
        e.extend_from_slice(image);
        self.file
            .write_all_at(&e, self.len)
            .map_err(|err| EngineError::io(&self.path, err))?;
        if block != COMMIT {
            self.map.insert(block, self.len + 12);
        }
        self.len += e.len() as u64;
        if self.len - self.flushed >= WRITEBACK_SLICE_BYTES {
            start_writeback(&self.file, self.flushed, self.len - self.flushed);
            self.flushed = self.len;
        }
        Ok(())
    }

    fn read(&self, block: u64, out: &mut [u8]) -> Result<bool> {
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
struct Committed {
    blocks: BTreeMap<u64, u64>,
    block_bytes: usize,
    /// The last WAL sequence number the merge folded in (`u64::MAX`: all of them).
    wal_seq: u64,
    slot: u64,
    header: Vec<u8>,
}

/// Parses a journal; `None` when it was never committed (or is torn before the commit).
fn parse(path: &Path) -> Result<Option<Committed>> {
    use std::io::Read;
    let io = |e| EngineError::io(path, e);
    let mut r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).map_err(io)?);
    let total = std::fs::metadata(path).map_err(io)?.len();
    let mut head = [0u8; 16];
    if total < 16
        || r.read_exact(&mut head).is_err()
        || (head[..8] != JOURNAL_MAGIC && head[..8] != JOURNAL_MAGIC_V1)
    {
        return Ok(None);
    }
    let v1 = head[..8] == JOURNAL_MAGIC_V1;
    let commit_len = if v1 {
        8 + SECTOR_BYTES
    } else {
        16 + SECTOR_BYTES
    };
    let bb = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
    let mut off = 16u64;
    let mut blocks = BTreeMap::new();
    let mut image = vec![0u8; bb.max(commit_len)];
    while off + 12 <= total {
        let mut eh = [0u8; 12];
        r.read_exact(&mut eh).map_err(io)?;
        let mut b8 = [0u8; 8];
        b8.copy_from_slice(&eh[..8]);
        let block = u64::from_le_bytes(b8);
        let stored = u32::from_le_bytes([eh[8], eh[9], eh[10], eh[11]]);
        let len = if block == COMMIT { commit_len } else { bb };
        if off + 12 + len as u64 > total {
            return Ok(None); // torn tail: never committed
        }
        r.read_exact(&mut image[..len]).map_err(io)?;
        let mut h = crc32fast::Hasher::new();
        h.update(&b8);
        h.update(&image[..len]);
        if h.finalize() != stored {
            return Ok(None);
        }
        if block == COMMIT {
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&image[8 * i..8 * i + 8]);
                u64::from_le_bytes(w)
            };
            let (wal_seq, header_at) = if v1 { (u64::MAX, 8) } else { (word(1), 16) };
            return Ok(Some(Committed {
                blocks,
                block_bytes: bb,
                slot: word(0),
                wal_seq,
                header: image[header_at..len].to_vec(),
            }));
        }
        blocks.insert(block, off + 12);
        off += 12 + len as u64;
    }
    Ok(None)
}

/// Applies a committed journal in place and finishes the merge (idempotent): block images,
/// header slot, `*.merge` renames, WAL trimmed through S, journal removal.
/// With `gate` (a live merge), block writes go in batches of [`APPLY_BATCH_BLOCKS`], each
/// holding the gate exclusively, so that concurrent searches never read a block mid-write.
fn apply(
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
    let wal = dir.join(crate::wal::WAL_FILE);
    if wal.exists() {
        counter()?;
        // keeps the updates logged while the merge ran: they are replayed on the new state
        crate::wal::trim(&wal, h.dim as usize, c.wal_seq)?;
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

/// Vector bytes of a new record in the index's element type.
fn record_vector(elem: ElementType, v: &[f32]) -> Vec<u8> {
    match elem {
        ElementType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ElementType::U8 => v.iter().map(|&x| x as u8).collect(),
        ElementType::I8 => v.iter().map(|&x| x as i8 as u8).collect(),
    }
}

fn vector_f32(elem: ElementType, bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    match elem {
        ElementType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        ElementType::U8 => out.extend(bytes.iter().map(|&x| f32::from(x))),
        ElementType::I8 => out.extend(bytes.iter().map(|&x| f32::from(x as i8))),
    }
}

/// RobustPrune of node `p` (vector `pv`) over candidates (slot, vector) in a local matrix.
struct Pruner {
    metric: Metric,
    alpha: f32,
    r: usize,
    dim: usize,
    local: Vec<f32>,
    ids: Vec<u32>,
    scratch: PruneScratch,
    out: Vec<u32>,
    /// Rows of `local` filled (lazy decoding in `repair`).
    ready: Vec<bool>,
}

impl Pruner {
    fn start(&mut self, pv: &[f32]) {
        self.local.clear();
        self.local.extend_from_slice(pv);
        self.ids.clear();
    }
    fn add(&mut self, slot: u32, v: &[f32]) {
        if !self.ids.contains(&slot) {
            self.ids.push(slot);
            self.local.extend_from_slice(v);
        }
    }
    fn run(&mut self) -> Vec<u32> {
        let d = self.dim;
        // IP graphs are navigated by the MIPS-to-L2 reduction at build time; here the
        // candidates are ranked in L2 for every metric (a true metric for the α rule).
        let metric = if self.metric == Metric::InnerProduct {
            Metric::L2
        } else {
            self.metric
        };
        self.scratch.pool.clear();
        for i in 0..self.ids.len() {
            let dist = <f32 as ssdann_layout::Vector>::distance(
                metric,
                &self.local[..d],
                &self.local[(i + 1) * d..(i + 2) * d],
            );
            self.scratch.pool.push((dist, i as u32 + 1));
        }
        robust_prune(
            &self.local,
            d,
            metric,
            0,
            self.alpha,
            self.r,
            DEFAULT_MAX_CANDIDATES,
            &mut self.scratch,
            &mut self.out,
        );
        self.out.iter().map(|&i| self.ids[i as usize - 1]).collect()
    }

    /// Delete-phase repair of a node (vector `own`): its surviving neighbours `kept` stay;
    /// the freed places are filled, closest first, with `replacements` that no kept or
    /// already added neighbour covers under the α rule (RobustPrune's test, Alg. 2, applied
    /// against the surviving list instead of from scratch, so the build's good edges are
    /// not re-decided on approximate distances). `decode` gives a point's PQ reconstruction;
    /// kept neighbours are decoded only when the α test reaches them, and the test abandons
    /// a distance as soon as it exceeds the bound that decides it.
    fn repair(
        &mut self,
        own: &[f32],
        kept: &[u32],
        replacements: &[u32],
        decode: &dyn Fn(u32, &mut [f32]),
    ) -> Vec<u32> {
        let d = self.dim;
        self.ids.clear();
        self.ids.extend_from_slice(kept);
        for &c in replacements {
            if !self.ids.contains(&c) {
                self.ids.push(c);
            }
        }
        let rows = 1 + self.ids.len();
        self.local.resize(rows * d, 0.0);
        self.local[..d].copy_from_slice(own);
        self.ready.clear();
        self.ready.resize(rows, false);
        let nk = kept.len();
        let mut cands: Vec<(f32, usize)> = Vec::with_capacity(rows - 1 - nk);
        for i in nk + 1..rows {
            decode(self.ids[i - 1], &mut self.local[i * d..(i + 1) * d]);
            self.ready[i] = true;
            cands.push((
                l2_sq_f32(&self.local[..d], &self.local[i * d..(i + 1) * d]),
                i,
            ));
        }
        cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<usize> = (1..=nk).collect();
        for (dc, c) in cands {
            if out.len() >= self.r {
                break;
            }
            // c is covered by o when α · d(o, c) ≤ d(p, c)
            let bound = dc / self.alpha;
            let mut covered = false;
            for &o in &out {
                if !self.ready[o] {
                    decode(self.ids[o - 1], &mut self.local[o * d..(o + 1) * d]);
                    self.ready[o] = true;
                }
                if l2_sq_f32_bounded(
                    &self.local[o * d..(o + 1) * d],
                    &self.local[c * d..(c + 1) * d],
                    bound,
                ) <= bound
                {
                    covered = true;
                    break;
                }
            }
            if !covered {
                out.push(c);
            }
        }
        out.iter().map(|&i| self.ids[i - 1]).collect()
    }
}

/// What a merge folds in (see `Snapshot::freeze_updates`).
struct Frozen {
    deleted: Vec<u32>,
    news: Vec<(u64, Vec<f32>)>,
    delta: crate::delta::DeltaIndex,
    wal_seq: u64,
}

/// A merge computed and committed to its journal, not yet applied.
struct Prepared {
    committed: Committed,
    journal_path: PathBuf,
    writes: u64,
    report: MergeReport,
    t0: Instant,
}

impl Index {
    /// Folds the pending inserts and deletes into the sector file in place (StreamingMerge;
    /// see the module docs) and trims them from the WAL. Returns when the merged state
    /// serves searches.
    ///
    /// Concurrency: searches keep running throughout. The delete, insert and patch phases
    /// only read `index.ssd`; while the committed journal is applied in place, each batch of
    /// block writes holds the file's gate exclusively (a search waits at most one batch,
    /// and never reads a half-written block). Searches that started before the swap finish
    /// on the pre-merge state even when they read rewritten blocks: a rewritten block
    /// keeps every pre-merge live point's vector (only its list changes), slots the merge
    /// frees or reuses were tombstoned in that state (never returned; their new points are
    /// still in its delta index), and slots it appends lie past that state's n (skipped).
    /// Inserts and deletes go on while the merge computes: it folds in the updates logged
    /// up to its start (copied under the update lock), and those made later stay pending —
    /// in the WAL, which the merge trims only up to its start, and in the new state, which
    /// replays the rest. They wait from the first in-place write to the swap.
    ///
    /// # Errors
    /// [`EngineError::Io`] / [`EngineError::Layout`]. Before the commit the on-disk state is
    /// the pre-merge index + WAL and this `Index` keeps serving it; after the commit the
    /// next `Index::open` finishes the merge, and this `Index` keeps answering searches but
    /// refuses updates and merges ([`EngineError::Inconsistent`]) until reopened.
    pub fn merge(&self, opts: &MergeOptions) -> Result<MergeReport> {
        self.merge_with_progress(opts, &NoProgress)
    }

    /// [`Index::merge`] reporting each phase (delete, insert, patch, in place) to `progress`
    /// (the CLI draws bars from it).
    ///
    /// # Errors
    /// As [`Index::merge`].
    pub fn merge_with_progress(
        &self,
        opts: &MergeOptions,
        progress: &dyn Progress,
    ) -> Result<MergeReport> {
        let _one_merge = self.merge_lock.lock();
        // Freeze what this merge folds in; inserts and deletes go on while it computes.
        let (snap, frozen) = {
            let _gate = self.lock_updates()?;
            let snap = self.snapshot();
            let frozen = snap.freeze_updates()?;
            (snap, frozen)
        };
        if let Some(p) = opts.prepare_pause {
            std::thread::sleep(p);
        }
        let Prepared {
            committed,
            journal_path,
            mut writes,
            mut report,
            t0,
        } = snap.prepare_merge(&frozen, opts, progress)?;
        drop(frozen);
        // From the in-place writes to the swap, updates wait (their WAL records must land
        // in the log the new state replays).
        let _gate = self.lock_updates()?;
        let tp = Instant::now();
        // Searches still on the state before `snap` read blocks only through its file's
        // gate, not `snap`'s: wait until they have finished.
        while self.retired.lock().strong_count() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        snap.superseded
            .store(true, std::sync::atomic::Ordering::Release);
        let fail = opts.fail_after_writes;
        let jpath = journal_path.clone();
        let applied = apply(
            self.dir(),
            &committed,
            Some(&snap.file.gate),
            opts.apply_pause,
            progress,
            &mut || {
                writes += 1;
                match fail {
                    Some(k) if writes > k => Err(injected(&jpath, k)),
                    _ => Ok(()),
                }
            },
        );
        let next = applied.and_then(|()| Snapshot::open(self.dir(), self.options().clone()));
        let next = match next {
            Ok(s) => s,
            Err(e) => {
                *self.broken.lock() = Some(format!(
                    "a merge failed after its commit ({e}); reopen the index to finish it"
                ));
                return Err(e);
            }
        };
        *self.retired.lock() = Arc::downgrade(&snap);
        *self.current.write() = Arc::new(next);
        report.phase_seconds[4] = tp.elapsed().as_secs_f64();
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }
}

impl Snapshot {
    /// Phases 1–5 of a merge: computes every rewritten block, stages the label map and PQ
    /// codes, and commits the journal (fsynced). Nothing of `index.ssd` is written yet.
    /// The updates a merge folds in, copied under the update lock so that inserts and
    /// deletes can go on while it runs: SSD slots to delete, new points, the delta graph
    /// (for the insert phase's candidates) and the last WAL sequence number they cover.
    fn freeze_updates(&self) -> Result<Frozen> {
        let up = self.updates.read().map_err(|_| EngineError::Inconsistent {
            path: self.dir.clone(),
            detail: "update lock poisoned".into(),
        })?;
        let mut deleted: Vec<u32> = up
            .tombstones
            .iter()
            .filter_map(|l| up.ssd_labels.get(l).copied())
            .collect();
        deleted.sort_unstable();
        let news = up
            .delta
            .live_points()
            .map(|(l, v)| (l, v.to_vec()))
            .collect();
        Ok(Frozen {
            deleted,
            news,
            delta: up.delta.clone(),
            wal_seq: up.wal.as_ref().map_or(0, |w| w.last_seq()),
        })
    }

    fn prepare_merge(
        &self,
        frozen: &Frozen,
        opts: &MergeOptions,
        progress: &dyn Progress,
    ) -> Result<Prepared> {
        let t0 = Instant::now();
        let dir = self.dir.clone();
        let options = self.options.clone();
        let h = self.header.clone();
        let layout = h.layout;
        let (d, m, n) = (self.dim(), self.pq.m(), h.n_slots);
        let deleted = &frozen.deleted;
        let del_set: HashSet<u32> = deleted.iter().copied().collect();
        let news = &frozen.news;
        let mut report = MergeReport {
            deleted: deleted.len(),
            inserted: news.len(),
            ..Default::default()
        };
        // Slot plan: slots this merge frees, then slots earlier merges left free, then growth.
        let free: Vec<u32> = deleted
            .iter()
            .copied()
            .chain((0..n as u32).filter(|&s| self.labels[s as usize] == FREE_LABEL))
            .collect();
        let mut new_slot: Vec<u32> = Vec::with_capacity(news.len());
        let mut next = n as u32;
        for i in 0..news.len() {
            if i < free.len() {
                new_slot.push(free[i]);
            } else {
                new_slot.push(next);
                next += 1;
            }
        }
        let n_new = u64::from(next);
        let new_set: HashMap<u32, usize> =
            new_slot.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        let label_to_new: HashMap<u64, u32> = news
            .iter()
            .zip(&new_slot)
            .map(|((l, _), &s)| (*l, s))
            .collect();
        let path = dir.join(INDEX_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        let bb = layout.block_bytes();
        let old_blocks = layout.blocks_for(n);
        let mut journal = Journal::create(&dir, bb, opts.fail_after_writes)?;
        let read_block = |journal: &Journal, b: u64, out: &mut [u8]| -> Result<()> {
            if journal.read(b, out)? {
                return Ok(());
            }
            if b < old_blocks {
                file.read_exact_at(out, layout.block_offset_bytes(b))
                    .map_err(|e| EngineError::io(&path, e))?;
                self.check_block(out, b)?;
            } else {
                out.fill(0);
            }
            Ok(())
        };
        let mut block = vec![0u8; bb];
        // 1. Deleted nodes' out-lists.
        let mut del_nbrs: HashMap<u32, Vec<u32>> = HashMap::with_capacity(deleted.len());
        for &s in deleted {
            read_block(&journal, layout.block_of(u64::from(s)), &mut block)?;
            del_nbrs.insert(
                s,
                layout
                    .record(&block, layout.offset_in_block(u64::from(s)))
                    .neighbors()
                    .collect(),
            );
        }
        let codes = &self.codes;
        let decode = |slot: u32, out: &mut Vec<f32>| {
            out.resize(d, 0.0);
            self.pq
                .decode(&codes[slot as usize * m..(slot as usize + 1) * m], out);
        };
        let decode_into = |slot: u32, out: &mut [f32]| {
            self.pq
                .decode(&codes[slot as usize * m..(slot as usize + 1) * m], out);
        };
        let mut tp = Instant::now();
        // 2. Delete phase: one sequential pass.
        let mut entry = h.entry_point as u32;
        if del_set.contains(&entry) {
            entry = del_nbrs
                .get(&entry)
                .and_then(|l| l.iter().copied().find(|x| !del_set.contains(x)))
                .or_else(|| (0..n as u32).find(|x| !del_set.contains(x)))
                .unwrap_or(0);
        }
        // Blocks are read in large sequential batches and repaired in parallel (rayon; one
        // Pruner per worker); changed ones go to the journal in block order.
        let new_pruner = || Pruner {
            metric: h.metric,
            alpha: h.build_alpha.max(1.0),
            r: h.max_degree as usize,
            dim: d,
            local: Vec::new(),
            ids: Vec::new(),
            scratch: PruneScratch::default(),
            out: Vec::new(),
            ready: Vec::new(),
        };
        let batch_blocks = ((8usize << 20) / bb).max(1) as u64;
        let mut batch = vec![0u8; batch_blocks as usize * bb];
        let mut b0 = 0u64;
        progress.start(Phase::MergeDelete, old_blocks);
        while b0 < old_blocks {
            let nb = batch_blocks.min(old_blocks - b0) as usize;
            let buf = &mut batch[..nb * bb];
            file.read_exact_at(buf, layout.block_offset_bytes(b0))
                .map_err(|e| EngineError::io(&path, e))?;
            let results: Vec<Result<(bool, usize)>> = buf
                .par_chunks_mut(bb)
                .enumerate()
                .map_init(
                    || (new_pruner(), Vec::new()),
                    |(pruner, pv), (k, blk)| {
                        let b = b0 + k as u64;
                        self.check_block(blk, b)?;
                        let mut changed = false;
                        let mut repaired = 0;
                        let first = b * layout.nodes_per_block as u64;
                        for id in first..(first + layout.nodes_per_block as u64).min(n) {
                            let s = id as u32;
                            let off = layout.offset_in_block(id);
                            if del_set.contains(&s) {
                                // The old entry point keeps its record until its slot is
                                // reused: searches still on the pre-merge state start there.
                                if !new_set.contains_key(&s) && u64::from(s) != h.entry_point {
                                    layout.write_record(
                                        blk,
                                        off,
                                        &vec![0u8; layout.vector_bytes()],
                                        &[],
                                    );
                                    changed = true;
                                }
                                continue;
                            }
                            if self.labels[s as usize] == FREE_LABEL {
                                continue; // free since an earlier merge: nobody links to it
                            }
                            let rec = layout.record(blk, off);
                            let nbrs: Vec<u32> = rec.neighbors().collect();
                            if !nbrs.iter().any(|x| del_set.contains(x)) {
                                continue;
                            }
                            vector_f32(h.element, rec.vector, pv);
                            let kept: Vec<u32> = nbrs
                                .iter()
                                .copied()
                                .filter(|x| !del_set.contains(x))
                                .collect();
                            let mut cands: Vec<u32> = Vec::new();
                            // Replacements: the first DELETE_CANDIDATES_PER_NODE entries of each deleted
                            // neighbour's list (its closest, in RobustPrune's output order).
                            for x in nbrs.iter().filter(|x| del_set.contains(x)) {
                                if let Some(l) = del_nbrs.get(x) {
                                    cands.extend(
                                        l.iter()
                                            .take(DELETE_CANDIDATES_PER_NODE)
                                            .copied()
                                            .filter(|y| !del_set.contains(y) && *y != s),
                                    );
                                }
                            }
                            let vb = rec.vector.to_vec();
                            let list = pruner.repair(pv, &kept, &cands, &decode_into);
                            layout.write_record(blk, off, &vb, &list);
                            repaired += 1;
                            changed = true;
                        }
                        if changed {
                            seal_block(blk);
                        }
                        Ok((changed, repaired))
                    },
                )
                .collect();
            for (k, r) in results.into_iter().enumerate() {
                let (changed, repaired) = r?;
                report.repaired += repaired;
                if changed {
                    journal.append(b0 + k as u64, &buf[k * bb..(k + 1) * bb])?;
                }
            }
            b0 += nb as u64;
            progress.advance(nb as u64);
        }
        progress.finish();
        report.phase_seconds[0] = tp.elapsed().as_secs_f64();
        tp = Instant::now();
        // 3. Insert phase: candidates from the pre-merge SSD graph and the delta.
        let mut new_adj: HashMap<u32, Vec<u32>> = HashMap::with_capacity(news.len());
        let mut back: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        // The insert phase's search list: R (not the build L) — the delta graph already
        // supplies the near neighbours among the new points, and a shorter list halves the
        // reads; W = 8 halves the round trips.
        let l = h.max_degree as usize;
        let sp = crate::index::SearchParams {
            l,
            w: options.max_beam_width.min(8),
        };
        // New points are placed in parallel (each runs its own beam search and prune), on a
        // pool of 4 threads per core: the searches mostly wait on reads.
        let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
        let io_pool = rayon::ThreadPoolBuilder::new()
            .num_threads(4 * cores)
            .build()
            .map_err(|e| EngineError::io(&dir, std::io::Error::other(e.to_string())))?;
        progress.start(Phase::MergeInsert, news.len() as u64);
        let lists: Vec<Result<Vec<u32>>> = io_pool.install(|| {
            news.par_iter()
                .enumerate()
                .map_init(
                    || {
                        (
                            new_pruner(),
                            Vec::with_capacity(l),
                            ssdann_builder::greedy_search::SearchScratch::default(),
                            Vec::new(),
                            Vec::new(),
                            Vec::new(),
                        )
                    },
                    |(pruner, found, dscratch, dfound, pq_vec, qv), (_, (label, v))| {
                        qv.clear();
                        qv.extend_from_slice(v);
                        // Exact vectors of every node the search scored (their sectors were read
                        // anyway) make the prune exact; PQ reconstructions stand in otherwise.
                        let mut ctx = self.take_context();
                        ctx.scores.keep_vectors = true;
                        let r = crate::beam_search::beam_search(self, &mut ctx, v, l, &sp, found);
                        pruner.start(v);
                        let kept: HashMap<u32, usize> = ctx
                            .scores
                            .kept_ids
                            .iter()
                            .enumerate()
                            .map(|(i, &id)| (id, i))
                            .collect();
                        let slots: &[(f32, u32)] = if r.is_ok() {
                            ctx.top_results(found.len())
                        } else {
                            &[]
                        };
                        for &(_, slot) in slots {
                            if !del_set.contains(&slot) {
                                match kept.get(&slot) {
                                    Some(&i) => pruner
                                        .add(slot, &ctx.scores.kept_vectors[i * d..(i + 1) * d]),
                                    None => {
                                        decode(slot, pq_vec);
                                        pruner.add(slot, pq_vec);
                                    }
                                }
                            }
                        }
                        ctx.scores.keep_vectors = false;
                        self.put_context(ctx);
                        r?;
                        frozen
                            .delta
                            .search(qv, h.max_degree as usize, l, dscratch, dfound);
                        for &(_, other) in dfound.iter() {
                            if other != *label {
                                if let Some(&os) = label_to_new.get(&other) {
                                    pruner.add(os, &news[new_set[&os]].1);
                                }
                            }
                        }
                        progress.advance(1);
                        Ok(pruner.run())
                    },
                )
                .collect()
        });
        for (i, list) in lists.into_iter().enumerate() {
            let list = list?;
            let s = new_slot[i];
            for &j in &list {
                back.entry(j).or_default().push(s);
            }
            new_adj.insert(s, list);
        }
        progress.finish();
        report.phase_seconds[1] = tp.elapsed().as_secs_f64();
        tp = Instant::now();
        // 4. Patch phase: new records and back-edges, block by block.
        let mut touched: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for &s in new_slot.iter().chain(back.keys()) {
            touched
                .entry(layout.block_of(u64::from(s)))
                .or_default()
                .push(s);
        }
        // Blocks are patched in parallel (one Pruner per worker), a chunk at a time; the
        // images go to the journal in block order.
        let touched: Vec<(u64, Vec<u32>)> = touched.into_iter().collect();
        let patch_block = |j: &Journal,
                           pruner: &mut Pruner,
                           pv: &mut Vec<f32>,
                           pq_vec: &mut Vec<f32>,
                           b: u64,
                           slots: &[u32]|
         -> Result<Vec<u8>> {
            let mut block = vec![0u8; bb];
            read_block(j, b, &mut block)?;
            let mut done = HashSet::new();
            for &s in slots {
                if !done.insert(s) {
                    continue;
                }
                let off = layout.offset_in_block(u64::from(s));
                let (vbytes, mut list, own): (Vec<u8>, Vec<u32>, Vec<f32>) = match new_set.get(&s) {
                    Some(&i) => (
                        record_vector(h.element, &news[i].1),
                        new_adj.get(&s).cloned().unwrap_or_default(),
                        news[i].1.clone(),
                    ),
                    None => {
                        let rec = layout.record(&block, off);
                        vector_f32(h.element, rec.vector, pv);
                        (rec.vector.to_vec(), rec.neighbors().collect(), pv.clone())
                    }
                };
                if let Some(extra) = back.get(&s) {
                    for &x in extra {
                        if !list.contains(&x) && x != s {
                            list.push(x);
                        }
                    }
                }
                if list.len() > h.max_degree as usize {
                    pruner.start(&own);
                    for &c in &list {
                        match new_set.get(&c) {
                            Some(&i) => pruner.add(c, &news[i].1),
                            None => {
                                decode(c, pq_vec);
                                pruner.add(c, pq_vec);
                            }
                        }
                    }
                    list = pruner.run();
                }
                layout.write_record(&mut block, off, &vbytes, &list);
            }
            seal_block(&mut block);
            Ok(block)
        };
        progress.start(Phase::MergePatch, touched.len() as u64);
        for chunk in touched.chunks(1024) {
            progress.advance(chunk.len() as u64);
            let j = &journal;
            let images: Vec<Result<Vec<u8>>> = chunk
                .par_iter()
                .map_init(
                    || (new_pruner(), Vec::new(), Vec::new()),
                    |(pruner, pv, pq_vec), (b, slots)| {
                        patch_block(j, pruner, pv, pq_vec, *b, slots)
                    },
                )
                .collect();
            for ((b, _), image) in chunk.iter().zip(images) {
                journal.append(*b, &image?)?;
            }
        }
        progress.finish();
        report.phase_seconds[2] = tp.elapsed().as_secs_f64();
        tp = Instant::now();
        // 5. Staged label map and PQ codes, then the commit entry.
        // Streamed from the pre-merge arrays plus the change set (no copy of either).
        let mut new_codes = vec![0u8; news.len() * m];
        let mut scratch = Vec::new();
        for (i, (_, v)) in news.iter().enumerate() {
            self.pq
                .encode(v, &mut new_codes[i * m..(i + 1) * m], &mut scratch);
        }
        let label_of = |s: usize| match new_set.get(&(s as u32)) {
            Some(&i) => news[i].0,
            None if s >= n as usize || del_set.contains(&(s as u32)) => FREE_LABEL,
            None => self.labels[s],
        };
        journal.tick()?;
        write_labels_with(
            &dir.join(format!("{LABELS_FILE}.merge")),
            n_new as usize,
            label_of,
        )?;
        journal.tick()?;
        write_codes_with(
            &dir.join(format!("{PQ_CODES_FILE}.merge")),
            n_new as usize,
            m,
            |s, out| match new_set.get(&(s as u32)) {
                Some(&i) => out.copy_from_slice(&new_codes[i * m..(i + 1) * m]),
                None if s >= n as usize => out.fill(0),
                None => out.copy_from_slice(&self.codes[s * m..(s + 1) * m]),
            },
        )?;
        let live = (0..n_new as usize)
            .filter(|&s| label_of(s) != FREE_LABEL)
            .count() as u64;
        let new_header = IndexHeader {
            generation: h.generation + 1,
            n_slots: n_new,
            live_count: live,
            entry_point: u64::from(entry),
            ..h.clone()
        };
        let (_, cur_slot) = {
            let mut two = AlignedBuf::new(2 * SECTOR_BYTES);
            self.file
                .file
                .read_exact_at(two.as_mut_slice(), 0)
                .map_err(|e| EngineError::io(&path, e))?;
            IndexHeader::choose(&path, two.as_slice())?
        };
        let other = 1 - cur_slot as u64;
        let mut commit = other.to_le_bytes().to_vec();
        commit.extend_from_slice(&frozen.wal_seq.to_le_bytes());
        commit.extend_from_slice(&new_header.encode());
        journal.append(COMMIT, &commit)?;
        journal
            .file
            .sync_all()
            .map_err(|e| EngineError::io(&journal.path, e))?;
        fsync_dir(&dir)?;
        report.blocks_written = journal.map.len();
        report.n_slots = n_new;
        report.phase_seconds[3] = tp.elapsed().as_secs_f64();
        let committed = parse(&journal.path)?.ok_or_else(|| EngineError::Inconsistent {
            path: journal.path.clone(),
            detail: "journal not readable right after its commit".into(),
        })?;
        report.journal_writes = journal.writes;
        Ok(Prepared {
            committed,
            journal_path: journal.path.clone(),
            writes: journal.writes,
            report,
            t0,
        })
    }
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
        j.file.write_all_at(&JOURNAL_MAGIC_V1, 0).unwrap();
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
