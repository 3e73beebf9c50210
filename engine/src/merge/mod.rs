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

mod delete;
mod insert;
pub mod journal;
mod patch;
pub(crate) mod plan;
mod prune;
pub(crate) mod recover;

pub use journal::JOURNAL_FILE;
pub use recover::recover;

use crate::error::EngineError;
use crate::io::AlignedBuf;
use crate::snapshot::Snapshot;
use crate::Result;
use journal::{parse, Committed, Journal, Parsed};
use plan::{Frozen, Plan};
use ssdann_builder::Progress;
use ssdann_layout::labels::{write_labels_with, FREE_LABEL, LABELS_FILE};
use ssdann_layout::pq::{write_codes_with, PQ_CODES_FILE};
use ssdann_layout::sector::SECTOR_BYTES;
use ssdann_layout::IndexHeader;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

/// Merge options.
#[derive(Clone, Debug, Default)]
pub struct MergeOptions {
    /// Test hook: fail (as a crash would stop) after this many journal appends, in-place
    /// block writes and file operations.
    pub fail_after_writes: Option<u64>,
    /// Test hook: sleep this long after each batch of in-place block writes, so that tests
    /// can search an index whose journal is half applied.
    pub apply_pause: Option<std::time::Duration>,
    /// Test hook: run after freezing the updates to fold in, before computing (the update
    /// lock released; the one-merge-at-a-time lock held), so that tests can insert and delete
    /// while a merge runs — deterministically, by waiting there for the updates rather than
    /// sleeping.
    pub after_freeze: Option<MergeHook>,
}

/// A test hook of [`MergeOptions`]: a function the merge calls at a fixed point.
#[derive(Clone)]
pub struct MergeHook(pub std::sync::Arc<dyn Fn() + Send + Sync>);

impl MergeHook {
    /// Wraps `f`.
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> MergeHook {
        MergeHook(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for MergeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MergeHook")
    }
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

/// A merge computed and committed to its journal, not yet applied.
pub(crate) struct Prepared {
    pub(crate) committed: Committed,
    pub(crate) journal_path: PathBuf,
    /// Journal appends and file operations so far (for `MergeOptions::fail_after_writes`).
    pub(crate) writes: u64,
    pub(crate) report: MergeReport,
    pub(crate) t0: Instant,
}

/// Phases 1–5 of a merge of `frozen` into `snap`: computes every rewritten block, stages
/// the label map and PQ codes, and commits the journal (fsynced). Nothing of `index.ssd` is
/// written yet.
///
/// # Errors
/// [`EngineError::Io`] / [`EngineError::Layout`]; the on-disk index is untouched (an
/// uncommitted journal and staged files may remain; recovery discards them).
pub(crate) fn prepare(
    snap: &Snapshot,
    frozen: &Frozen,
    opts: &MergeOptions,
    progress: &dyn Progress,
) -> Result<Prepared> {
    let t0 = Instant::now();
    let plan = Plan::new(snap, frozen)?;
    // Limits before the first file is written: a refused merge leaves nothing behind.
    let generation = next_generation(&plan)?;
    let mut report = MergeReport {
        deleted: frozen.deleted.len(),
        inserted: frozen.news.len(),
        ..Default::default()
    };
    let mut journal = Journal::create(
        &snap.state.dir,
        plan.layout.block_bytes(),
        plan.h.generation,
        plan.layout.blocks_for(plan.n_new),
        opts.fail_after_writes,
        snap.state.options.storage.clone(),
    )?;
    let mut tp = Instant::now();
    let entry = delete::delete_phase(&plan, &mut journal, progress, &mut report)?;
    report.phase_seconds[0] = tp.elapsed().as_secs_f64();
    tp = Instant::now();
    let lists = insert::insert_phase(&plan, snap.state.options.max_beam_width, progress)?;
    report.phase_seconds[1] = tp.elapsed().as_secs_f64();
    tp = Instant::now();
    patch::patch_phase(&plan, &mut journal, &lists, progress)?;
    drop(lists);
    report.phase_seconds[2] = tp.elapsed().as_secs_f64();
    tp = Instant::now();
    stage_and_commit(&plan, &mut journal, entry, generation, &mut report)?;
    report.phase_seconds[3] = tp.elapsed().as_secs_f64();
    let Parsed::Committed(committed) = parse(&journal.path, &plan.h)? else {
        return Err(EngineError::Inconsistent {
            path: journal.path.clone(),
            detail: "journal not readable right after its commit".into(),
        });
    };
    report.journal_writes = journal.writes;
    Ok(Prepared {
        committed: *committed,
        journal_path: journal.path.clone(),
        writes: journal.writes,
        report,
        t0,
    })
}

/// The merged index's header generation, checked with the other limits a merge is bound by
/// before it writes anything: generations stay below 2^62 (they never wrap), and the WAL
/// trimmed through the last sequence number S the merge folds in starts at S + 1, which must
/// be a sequence number (< 2^62) too (docs/FORMAT.md, "Reserved values and limits").
///
/// # Errors
/// [`EngineError::Inconsistent`] naming index.ssd (generation) or wal.log (S).
fn next_generation(plan: &Plan) -> Result<u64> {
    let h = &plan.h;
    let generation = h
        .generation
        .checked_add(1)
        .filter(|&g| g < ssdann_layout::header::MAX_GENERATION)
        .ok_or_else(|| EngineError::Inconsistent {
            path: plan.path.clone(),
            detail: format!(
                "header generation {} cannot advance: generations stay below 2^62; nothing was written",
                h.generation
            ),
        })?;
    let s = plan.frozen.wal_seq;
    if s.checked_add(1)
        .is_none_or(|next| next >= ssdann_layout::wal::MAX_SEQ)
    {
        return Err(EngineError::Inconsistent {
            path: plan.st.dir.join(crate::updates::wal::WAL_FILE),
            detail: format!(
                "WAL sequence number {s}: the log trimmed by this merge would start at {s} + 1, past the limit 2^62; nothing was written"
            ),
        });
    }
    Ok(generation)
}

/// Phase 5: the staged label map and PQ codes (`*.merge`, streamed from the pre-merge
/// arrays plus the change set: no copy of either, each fsynced), the journal's entries
/// fsynced, the directory fsynced (the journal's and the staged files' entries), then the
/// commit entry — twice, so that one copy damaged on the medium is survivable — with the
/// new header slot image, fsynced.
fn stage_and_commit(
    plan: &Plan,
    journal: &mut Journal,
    entry: u32,
    generation: u64,
    report: &mut MergeReport,
) -> Result<()> {
    let st = plan.st;
    let (h, m, n, n_new) = (&plan.h, plan.m, plan.n, plan.n_new);
    let new_set = &plan.new_set;
    let (dir, path) = (&st.dir, &plan.path);
    // Streamed from the pre-merge arrays plus the change set (no copy of either).
    let new_codes = &plan.new_codes;
    let label_of = |s: usize| plan.label_after(s);
    let storage = &st.options.storage;
    let staged_labels = dir.join(format!("{LABELS_FILE}.merge"));
    let staged_codes = dir.join(format!("{PQ_CODES_FILE}.merge"));
    journal.tick()?;
    write_labels_with(&staged_labels, n_new as usize, label_of)?;
    storage
        .wrote_file(&staged_labels, "stage.labels")
        .map_err(|e| EngineError::io(&staged_labels, e))?;
    journal.tick()?;
    write_codes_with(&staged_codes, n_new as usize, m, |s, out| {
        match new_set.get(&(s as u32)) {
            Some(&i) => out.copy_from_slice(&new_codes[i * m..(i + 1) * m]),
            None if s >= n as usize => out.fill(0),
            None => out.copy_from_slice(&st.codes[s * m..(s + 1) * m]),
        }
    })?;
    storage
        .wrote_file(&staged_codes, "stage.codes")
        .map_err(|e| EngineError::io(&staged_codes, e))?;
    let live = (0..n_new as usize)
        .filter(|&s| label_of(s) != FREE_LABEL)
        .count() as u64;
    let new_header = IndexHeader {
        generation,
        n_slots: n_new,
        live_count: live,
        entry_point: u64::from(entry),
        ..h.clone()
    };
    let (_, cur_slot) = {
        let mut two = AlignedBuf::new(2 * SECTOR_BYTES);
        st.file
            .file
            .read_exact_at(two.as_mut_slice(), 0)
            .map_err(|e| EngineError::io(path, e))?;
        IndexHeader::choose(path, two.as_slice())?
    };
    let other = 1 - cur_slot as u64;
    // The commit binds the staged files by their body CRCs: recovery puts only these in place.
    let crc = |p: &PathBuf| ssdann_layout::journal::stored_body_crc(p).map_err(EngineError::from);
    let commit = journal::CommitEntry {
        slot: other,
        wal_seq: plan.frozen.wal_seq,
        entries_end: None,
        staged_crcs: Some([crc(&staged_labels)?, crc(&staged_codes)?]),
        header: new_header.encode().to_vec(),
    };
    journal.sync_entries(dir)?;
    journal.commit(&commit)?;
    journal.sync_commit()?;
    report.blocks_written = journal.map.len();
    report.n_slots = n_new;
    Ok(())
}
