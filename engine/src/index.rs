//! [`Index`]: an open SSD index (DiskANN, NeurIPS 2019, §3; updates per FreshDiskANN, Singh et
//! al. 2021) — the one public handle, and the one place that knows the lock protocol.
//!
//! # Lock protocol
//!
//! The state searches see is an `Arc<Snapshot>` (header, PQ codes, labels, node cache,
//! pending updates); a merge builds the next one and swaps it in. Locks, **in the order they
//! are taken** (a thread holding one may only take those below it):
//!
//! 1. `merge_lock` (Mutex): held by a merge from start to end — one merge at a time.
//! 2. `update_gate` (Mutex): held by every insert and delete, and by a merge while it freezes
//!    its input and from its first in-place write to the swap. Updates are serialized.
//! 3. `retired` (Mutex), `broken` (Mutex): short critical sections, never held across
//!    another lock.
//! 4. `current` (RwLock): read for a moment to clone the `Arc<Snapshot>`; written only by
//!    the swap.
//! 5. `Snapshot::wal` (Mutex): the WAL handle, taken by an insert or delete for its append
//!    and fsync. Searches never take it.
//! 6. `Snapshot::updates` (std RwLock): read by a search after its beam search (the
//!    tombstone filter and the delta index search) and by an insert planning its delta
//!    out-list; written only to apply an update already logged and planned (no I/O, no
//!    search under it).
//! 7. `SectorFile::gate` (RwLock): read by each batch of search reads (once look-ahead
//!    rounds start: the rest of the search), written by each batch of a merge's in-place
//!    block writes.
//! 8. The context pool, the insert scratch and the WAL's own mutex: leaves.
//!
//! Searches take only 4 (for a moment), 6 and 7 — never 1–3 or 5: they never wait for a
//! WAL append or its fsync, and wait for a merge at most one batch of in-place writes.
//! Outside the engine: the directory's advisory lock (`io::lock`), one writer per directory.

use crate::error::EngineError;
use crate::io::lock::DirLock;
use crate::merge::plan::Frozen;
use crate::merge::recover::ApplyHooks;
use crate::merge::{journal::injected, MergeOptions, MergeReport, Prepared};
use crate::navigation::NavigationSource;
use crate::options::OpenOptions;
use crate::search::{Neighbor, SearchParams, SearchStats};
use crate::snapshot::Snapshot;
use crate::Result;
use ssdann_builder::{NoProgress, Progress};
use ssdann_layout::{IndexHeader, Metric};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Largest thread count [`Index::batch_search`] accepts (the build's limit too:
/// [`ssdann_builder::params::MAX_THREADS`]).
pub const MAX_THREADS: usize = ssdann_builder::params::MAX_THREADS;

/// An open index. `Index: Send + Sync`: searches, inserts, deletes and merges may all be
/// called from many threads at once.
///
/// Concurrency: searches never wait for updates or merges (beyond one batch of a merge's
/// in-place writes, see [`Index::merge`]); inserts and deletes are serialized with each
/// other, go on while a merge computes, and wait while it writes in place and swaps.
pub struct Index {
    dir: PathBuf,
    /// The directory lock: exclusive unless opened read-only (see `io::lock`).
    _lock: DirLock,
    /// The process that opened the index: only it may write (a forked child shares the
    /// lock and the WAL's file description, but not the parent's in-memory state).
    owner_pid: u32,
    options: OpenOptions,
    /// The state searches start on.
    pub(crate) current: parking_lot::RwLock<Arc<Snapshot>>,
    /// Held by inserts and deletes, and by a merge while it freezes its input and while it
    /// applies and swaps in its result.
    pub(crate) update_gate: parking_lot::Mutex<()>,
    /// Held by a merge from start to end (one merge at a time).
    pub(crate) merge_lock: parking_lot::Mutex<()>,
    /// The state the last merge replaced, while searches still hold it.
    pub(crate) retired: parking_lot::Mutex<std::sync::Weak<Snapshot>>,
    /// Why updates are refused (a merge failed after its commit: reopen to finish it).
    pub(crate) broken: parking_lot::Mutex<Option<String>>,
}

impl Index {
    /// Opens the index in `dir`: validates the header, the sector file's size and the PQ
    /// files against each other, loads the PQ pivots and codes (n × M bytes) into RAM, checks
    /// `labels.bin` in one streaming pass (CRC, one label per slot, free slots against the
    /// header's live count) and keeps no copy of it — nothing when the labels are the
    /// identity, else the file memory-mapped — and loads the node cache. RAM held: the PQ
    /// codes plus a fixed amount ([`Index::memory_report`]).
    ///
    /// # Errors
    /// - [`EngineError::Layout`]: a missing, truncated or corrupt file (names it and the field;
    ///   a label on two slots is corrupt `labels.bin`).
    /// - [`EngineError::Inconsistent`]: the files disagree (n, d, M, free slots).
    /// - [`EngineError::Locked`]: another handle has the directory open for writing (or, for
    ///   a writer, open at all): one writer per index directory.
    /// - [`EngineError::NotAllowed`]: a read-only open of an index with an unfinished merge.
    /// - [`EngineError::Io`].
    ///
    /// # Example
    /// ```
    /// use ssdann_builder::{build_from_vectors, BuildParams, NoProgress};
    /// use ssdann_engine::{Index, OpenOptions, SearchParams};
    /// // 2,000 clustered 32-d vectors, an index in a temporary directory
    /// let (base, queries) = ssdann_builder::synthetic::clustered(2000, 5, 32, 8, 1);
    /// let dir = tempfile::tempdir()?;
    /// let params = BuildParams { max_degree: 24, build_l: 48, pq_bytes: Some(8), ..Default::default() };
    /// build_from_vectors(&base, 32, &dir.path().join("idx"), &params, &NoProgress)?;
    ///
    /// let index = Index::open(&dir.path().join("idx"), OpenOptions::default())?;
    /// let hits = index.search(&base[32 * 7..32 * 8], 10, &SearchParams::new(50, 4))?;
    /// assert_eq!(hits[0].id, 7); // a base vector finds itself first, at distance 0
    /// assert!(hits[0].distance < 1e-6);
    /// let (hits, stats) = index.search_with_stats(&queries[..32], 10, &SearchParams::default())?;
    /// assert_eq!(hits.len(), 10);
    /// assert!(stats.sector_reads > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: &Path, options: OpenOptions) -> Result<Index> {
        // The lock comes first: recovery writes, and so may every later call.
        let lock = DirLock::acquire(dir, !options.read_only)?;
        if !options.read_only {
            crate::merge::recover(dir, &*options.storage)?;
        } else if dir.join(crate::merge::JOURNAL_FILE).exists() {
            return Err(EngineError::NotAllowed {
                path: dir.into(),
                detail: format!(
                    "an interrupted merge ({}) needs recovery, which writes: open the index read-write once to finish it",
                    crate::merge::JOURNAL_FILE
                ),
            });
        }
        let snap = Snapshot::open(dir, options.clone())?;
        Ok(Index {
            dir: dir.into(),
            _lock: lock,
            owner_pid: std::process::id(),
            options,
            current: parking_lot::RwLock::new(Arc::new(snap)),
            update_gate: parking_lot::Mutex::new(()),
            merge_lock: parking_lot::Mutex::new(()),
            retired: parking_lot::Mutex::new(std::sync::Weak::new()),
            broken: parking_lot::Mutex::new(None),
        })
    }

    /// The state searches start on now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().clone()
    }

    /// The options the index was opened with.
    pub(crate) fn options(&self) -> &OpenOptions {
        &self.options
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The header in force (a copy: a merge replaces it).
    pub fn header(&self) -> IndexHeader {
        self.snapshot().state.header.clone()
    }
    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.snapshot().state.dim()
    }
    /// Slots n (live points plus free slots; see [`Index::live_count`]).
    pub fn len(&self) -> usize {
        self.snapshot().state.header.n_slots as usize
    }
    /// Always false for an open index.
    pub fn is_empty(&self) -> bool {
        self.snapshot().state.header.n_slots == 0
    }
    /// Metric.
    pub fn metric(&self) -> Metric {
        self.snapshot().state.header.metric
    }
    /// Nodes in the node cache.
    pub fn cached_nodes(&self) -> usize {
        self.snapshot().state.cache.slots.len()
    }
    /// Sample nodes in the in-memory navigation graph (0 without one).
    pub fn navigation_nodes(&self) -> usize {
        self.snapshot()
            .state
            .navigation
            .as_ref()
            .map_or(0, |n| n.len())
    }
    /// Where the navigation graph came from: the index's `navigation.bin`, built at open
    /// (an older index without one, or `OpenOptions::navigation_nodes = Some(k)`), or off.
    pub fn navigation_source(&self) -> NavigationSource {
        self.snapshot().state.navigation_source
    }
    /// The early-termination ratio a search uses when its `SearchParams::termination_ratio`
    /// is `None`: 1 + max(1.5 × [`Index::near_error`]'s error, 0.15); `None` (no early termination)
    /// for an inner-product index or one too small to measure.
    pub fn default_termination_ratio(&self) -> Option<f32> {
        self.snapshot().state.default_termination
    }
    /// PQ's error on near pairs ([`ssdann_layout::near_error`]): the 99th percentile of
    /// (approximate − exact) / d₁₀ over near pairs of the index's own points and the
    /// median d₁₀, from the header (measured by the build) or, for an index built before
    /// format minor 3, measured at open.
    pub fn near_error(&self) -> Option<ssdann_layout::near_error::NearError> {
        self.snapshot().state.near_error
    }
    /// Whether reads bypass the page cache (O_DIRECT).
    pub fn direct_io(&self) -> bool {
        self.snapshot().state.file.direct
    }
    /// Bytes of RAM held: [`Index::memory_report`]'s total.
    pub fn memory_bytes(&self) -> usize {
        self.memory_report().total_bytes()
    }
    /// RAM held by structure: PQ codes, pivots, label array, label → slot map, node cache,
    /// pending updates (bytes; hash tables estimated from their capacity).
    pub fn memory_report(&self) -> crate::snapshot::MemoryReport {
        self.snapshot().memory()
    }
    /// Name of the I/O backend the search threads use ("io_uring" or "pread").
    pub fn io_backend_name(&self) -> &'static str {
        let s = self.snapshot();
        let ctx = s.contexts.take(&s.state, 1);
        let name = ctx.reader_name();
        s.contexts.put(ctx);
        name
    }

    /// Beam search for the `k` nearest neighbours of `query` (length d, f32), closest first.
    /// Limits: 1 ≤ k ≤ [`crate::search::MAX_K`], k ≤ L ≤ [`crate::search::MAX_L`],
    /// 1 ≤ W ≤ [`crate::search::MAX_W`] (a W above `OpenOptions::max_beam_width` allocates one
    /// search context's buffers for it once).
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] for a wrong dimension, a NaN/inf value, or k, L or W
    /// out of range (checked before anything is sized by them); [`EngineError::Io`] on a failed read; [`EngineError::Layout`] when
    /// `verify_reads` finds a bad checksum.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        let mut out = Vec::with_capacity(k.min(crate::options::MAX_K));
        self.search_into(query, k, params, &mut out)?;
        Ok(out)
    }

    /// [`Index::search`] that also returns the query's [`SearchStats`].
    ///
    /// # Errors
    /// As [`Index::search`].
    pub fn search_with_stats(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<(Vec<Neighbor>, SearchStats)> {
        let mut out = Vec::with_capacity(k.min(crate::options::MAX_K));
        let stats = self.search_into(query, k, params, &mut out)?;
        Ok((out, stats))
    }

    /// Search into a caller-owned vector (cleared first). Once the thread's context is warm
    /// and `out` has capacity k, this performs no heap allocation.
    ///
    /// # Errors
    /// As [`Index::search`].
    pub fn search_into(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        out: &mut Vec<Neighbor>,
    ) -> Result<SearchStats> {
        self.snapshot().search_into(query, k, params, out)
    }

    /// Searches every row of `queries` (nq × d, row-major) on a pool of `threads` threads
    /// (None = all cores); returns per query its neighbours and stats, in query order.
    ///
    /// # Errors
    /// The first error of any query (see [`Index::search`]); `queries.len()` not a multiple
    /// of d is an [`EngineError::InvalidQuery`].
    pub fn batch_search(
        &self,
        queries: &[f32],
        k: usize,
        params: &SearchParams,
        threads: Option<usize>,
    ) -> Result<Vec<(Vec<Neighbor>, SearchStats)>> {
        use rayon::prelude::*;
        let d = self.dim();
        if !queries.len().is_multiple_of(d) {
            return Err(EngineError::InvalidQuery {
                field: "queries",
                value: format!("{} values", queries.len()),
                reason: format!("not a multiple of d = {d}"),
            });
        }
        let mut pool = rayon::ThreadPoolBuilder::new();
        if let Some(t) = threads {
            if t == 0 || t > MAX_THREADS {
                return Err(EngineError::InvalidQuery {
                    field: "threads",
                    value: t.to_string(),
                    reason: format!("must be in 1..={MAX_THREADS} (None: all cores)"),
                });
            }
            pool = pool.num_threads(t);
        }
        let pool = pool.build().map_err(|e| EngineError::InvalidQuery {
            field: "threads",
            value: format!("{threads:?}"),
            reason: e.to_string(),
        })?;
        pool.install(|| {
            queries
                .par_chunks(d)
                .with_max_len(1)
                .map(|q| self.search_with_stats(q, k, params))
                .collect()
        })
    }

    /// Takes the update gate (waiting while a merge runs) unless a failed merge left the
    /// index needing a reopen.
    pub(crate) fn lock_updates(&self) -> Result<parking_lot::MutexGuard<'_, ()>> {
        if self.options.read_only {
            return Err(EngineError::NotAllowed {
                path: self.dir.clone(),
                detail: "the index was opened read-only: inserts, deletes and merges are refused"
                    .into(),
            });
        }
        let pid = std::process::id();
        if pid != self.owner_pid {
            return Err(EngineError::NotAllowed {
                path: self.dir.clone(),
                detail: format!(
                    "this Index was opened by process {} and is used in process {pid} (after fork): updates are refused here; open the index in this process instead",
                    self.owner_pid
                ),
            });
        }
        let g = self.update_gate.lock();
        if let Some(why) = self.broken.lock().as_ref() {
            return Err(EngineError::Inconsistent {
                path: self.dir().to_path_buf(),
                detail: why.clone(),
            });
        }
        Ok(g)
    }

    /// Inserts (or replaces) the points `items` = (label, vector of d f32 values). All are
    /// validated first; then they are appended to the WAL as one group (durable per
    /// [`crate::options::SyncMode`] before this returns) and applied to the delta index. Searches see them
    /// as soon as this returns. Waits while a merge runs.
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] for a wrong dimension, a NaN/inf value, or a value a
    /// u8/i8 index cannot store (nothing is logged then); [`EngineError::Io`] from the WAL;
    /// [`EngineError::Inconsistent`] after a merge failed past its commit (reopen the index).
    pub fn insert_batch(&self, items: &[(u64, &[f32])]) -> Result<()> {
        let _g = self.lock_updates()?;
        self.snapshot().insert_batch(items)
    }
    /// Inserts (or replaces) one point; see [`Index::insert_batch`].
    ///
    /// # Errors
    /// As [`Index::insert_batch`].
    pub fn insert(&self, label: u64, vector: &[f32]) -> Result<()> {
        self.insert_batch(&[(label, vector)])
    }

    /// Deletes the points with these labels (WAL first, then tombstones / delta removal).
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] naming the first label that is not live (nothing is
    /// logged then); [`EngineError::Io`] from the WAL; [`EngineError::Inconsistent`] as for
    /// [`Index::insert_batch`]. Waits while a merge runs.
    pub fn delete_batch(&self, labels: &[u64]) -> Result<()> {
        let _g = self.lock_updates()?;
        self.snapshot().delete_batch(labels)
    }

    /// Deletes one point; see [`Index::delete_batch`].
    ///
    /// # Errors
    /// As [`Index::delete_batch`].
    pub fn delete(&self, label: u64) -> Result<()> {
        self.delete_batch(&[label])
    }

    /// Pending updates: (live points in the delta index, tombstoned SSD points, WAL records).
    pub fn pending(&self) -> (usize, usize, u64) {
        let s = self.snapshot();
        let r = s.updates.read();
        match r {
            Ok(u) => (u.delta.live(), u.tombstones.len(), u.wal_ops),
            Err(_) => (0, 0, 0),
        }
    }

    /// Live points: SSD points not tombstoned plus the delta's.
    pub fn live_count(&self) -> usize {
        let s = self.snapshot();
        let r = s.updates.read();
        match r {
            // the SSD's live points are the header's live count (no label map needed)
            Ok(u) => {
                (s.state.header.live_count as usize).saturating_sub(u.tombstones.len())
                    + u.delta.live()
            }
            Err(_) => s.state.header.live_count as usize,
        }
    }

    /// The largest label in use (SSD or delta), for callers that number new points.
    pub fn max_label(&self) -> Option<u64> {
        let s = self.snapshot();
        let labels = &s.state.labels;
        let ssd = if labels.is_identity() {
            labels.len().checked_sub(1).map(|l| l as u64)
        } else {
            labels
                .iter()
                .filter(|&l| l != ssdann_layout::labels::FREE_LABEL)
                .max()
        };
        let delta = s
            .updates
            .read()
            .ok()
            .and_then(|u| u.delta.live_points().map(|(l, _)| l).max());
        ssd.max(delta)
    }

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
            let frozen = Frozen::of(&snap)?;
            (snap, frozen)
        };
        if let Some(hook) = &opts.after_freeze {
            (hook.0)();
        }
        let Prepared {
            committed,
            journal_path,
            mut writes,
            mut report,
            t0,
        } = crate::merge::prepare(&snap, &frozen, opts, progress)?;
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
        snap.state
            .superseded
            .store(true, std::sync::atomic::Ordering::Release);
        let fail = opts.fail_after_writes;
        let jpath = journal_path.clone();
        let hooks = ApplyHooks {
            gate: Some(&snap.state.file.gate),
            pause: opts.apply_pause,
        };
        let applied = crate::merge::recover::apply(
            self.dir(),
            &committed,
            &*self.options.storage,
            &hooks,
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
