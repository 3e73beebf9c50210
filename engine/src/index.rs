//! `Index`: an open SSD index (DiskANN, NeurIPS 2019, §3): header and PQ data in RAM, node
//! sectors read on demand through a per-thread [`crate::io::SectorReader`].

use crate::beam_search::{beam_search, SearchContext};
use crate::error::EngineError;
use crate::io::{make_reader, IoBackend, SectorFile};
use crate::Result;
use ssdann_builder::build::INDEX_FILE;
use ssdann_layout::pq::{read_codes, PQ_CODES_FILE, PQ_PIVOTS_FILE};
use ssdann_layout::sector::check_block;
use ssdann_layout::{IndexHeader, Metric, PqCodebook, SECTOR_BYTES};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// How to open an index.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// Nodes held in RAM: the `cache_nodes` nodes nearest the entry point by BFS hops.
    /// Expanding one counts as a cache hit, not a read. Default 0.
    pub cache_nodes: usize,
    /// I/O backend. Default io_uring.
    pub io: IoBackend,
    /// Check each block's CRC32 on every read (off by default); a mismatch is an error.
    pub verify_reads: bool,
    /// Largest beam width W searches may use (sizes each thread's buffers). Default 16.
    pub max_beam_width: usize,
    /// Expand, without another read, the other nodes of every fetched block that are
    /// already candidates (Starling-style sector reuse; builds co-locate graph neighbours).
    /// Default true; false gives DiskANN's one-node-per-read behaviour.
    pub sector_reuse: bool,
    /// Pipelined search (experimental, default false): keep up to W reads in flight and
    /// issue the next one as soon as any completes, instead of rounds of W reads that wait
    /// for the slowest.
    pub pipeline: bool,
    /// When inserts and deletes are fsynced to the WAL (see [`crate::wal::SyncMode`] for
    /// what each mode can lose in a crash). Default `Always`.
    pub sync: crate::wal::SyncMode,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_nodes: 0,
            io: IoBackend::IoUring,
            verify_reads: false,
            max_beam_width: 16,
            sector_reuse: true,
            sync: crate::wal::SyncMode::Always,
            pipeline: false,
        }
    }
}

/// Per-query search parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchParams {
    /// Search list size L (≥ k).
    pub l: usize,
    /// Beam width W: nodes expanded (sectors read in one submission) per round.
    pub w: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { l: 100, w: 4 }
    }
}

/// One result: the point's label (its id; the row number in the build file) and its
/// distance to the query (squared L2; negated inner product; cosine distance `1 - cos`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    /// Label of the point.
    pub id: u64,
    /// Distance to the query, per the index metric.
    pub distance: f32,
}

/// What one search did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SearchStats {
    /// Rounds of the beam search (pipelined search: waits for read completions).
    pub hops: u32,
    /// Sectors read from the SSD (a multi-sector block counts its sectors).
    pub sector_reads: u32,
    /// Nodes expanded from the node cache (no I/O).
    pub cache_hits: u32,
    /// Nodes expanded in total.
    pub nodes_expanded: u32,
    /// Time spent waiting for reads, µs.
    pub io_wait_us: f64,
    /// Wall time of the whole search, µs.
    pub total_us: f64,
}

/// The node cache: records of the nodes nearest the entry point.
#[derive(Default)]
pub(crate) struct NodeCache {
    pub(crate) slots: HashMap<u32, usize>,
    pub(crate) records: Vec<u8>,
}

/// One consistent state of an open index: header, PQ data, label map, node cache and the
/// pending updates. A merge builds the next state and swaps it in (see [`Index`]); searches
/// that started on the previous one finish on it.
pub(crate) struct Snapshot {
    pub(crate) dir: PathBuf,
    pub(crate) header: IndexHeader,
    pub(crate) pq: PqCodebook,
    pub(crate) codes: Vec<u8>,
    pub(crate) labels: Vec<u64>,
    pub(crate) file: Arc<SectorFile>,
    pub(crate) options: OpenOptions,
    pub(crate) cache: NodeCache,
    contexts: Mutex<Vec<SearchContext>>,
    /// Pending inserts and deletes (delta index, tombstones, WAL).
    pub(crate) updates: std::sync::RwLock<crate::updates::Updates>,
    /// Set when a merge starts rewriting blocks under this state: its searches may then read
    /// post-merge blocks, whose lists can name slots past this state's n (skipped, not an
    /// error). See `merge` for why such mixed reads still give correct answers.
    pub(crate) superseded: AtomicBool,
}

/// An open index. `Index: Send + Sync`: searches, inserts, deletes and merges may all be
/// called from many threads at once.
///
/// Concurrency: searches never wait for updates or merges (beyond one batch of a merge's
/// in-place writes, see [`Index::merge`]); inserts and deletes are serialized with each
/// other, go on while a merge computes, and wait while it writes in place and swaps.
pub struct Index {
    dir: PathBuf,
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
    /// files against each other, loads the PQ pivots and codes (n × M bytes) into RAM, and
    /// loads the node cache.
    ///
    /// # Errors
    /// - [`EngineError::Layout`]: a missing, truncated or corrupt file (names it and the field).
    /// - [`EngineError::Inconsistent`]: the files disagree (n, d, M).
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
    /// let hits = index.search(&base[32 * 7..32 * 8], 10, &SearchParams { l: 50, w: 4 })?;
    /// assert_eq!(hits[0].id, 7); // a base vector finds itself first, at distance 0
    /// assert!(hits[0].distance < 1e-6);
    /// let (hits, stats) = index.search_with_stats(&queries[..32], 10, &SearchParams::default())?;
    /// assert_eq!(hits.len(), 10);
    /// assert!(stats.sector_reads > 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: &Path, options: OpenOptions) -> Result<Index> {
        crate::merge::recover(dir)?;
        let snap = Snapshot::open(dir, options.clone())?;
        Ok(Index {
            dir: dir.into(),
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
        self.snapshot().header.clone()
    }
    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.snapshot().dim()
    }
    /// Slots n (live points plus free slots; see [`Index::live_count`]).
    pub fn len(&self) -> usize {
        self.snapshot().header.n_slots as usize
    }
    /// Always false for an open index.
    pub fn is_empty(&self) -> bool {
        self.snapshot().header.n_slots == 0
    }
    /// Metric.
    pub fn metric(&self) -> Metric {
        self.snapshot().header.metric
    }
    /// Nodes in the node cache.
    pub fn cached_nodes(&self) -> usize {
        self.snapshot().cache.slots.len()
    }
    /// Whether reads bypass the page cache (O_DIRECT).
    pub fn direct_io(&self) -> bool {
        self.snapshot().file.direct
    }
    /// Bytes of RAM held: PQ codes, pivots, label map, node cache.
    pub fn memory_bytes(&self) -> usize {
        let s = self.snapshot();
        s.codes.len()
            + s.labels.len() * 8
            + s.pq.memory_bytes()
            + s.cache.records.len()
            + s.cache.slots.len() * 16
    }
    /// Name of the I/O backend the search threads use ("io_uring" or "pread").
    pub fn io_backend_name(&self) -> &'static str {
        let s = self.snapshot();
        let ctx = s.take_context();
        let name = ctx.reader_name();
        s.put_context(ctx);
        name
    }

    /// Beam search for the `k` nearest neighbours of `query` (length d, f32), closest first.
    ///
    /// # Errors
    /// [`EngineError::InvalidQuery`] for a wrong dimension, a NaN/inf value, k = 0, L < k or
    /// W out of range; [`EngineError::Io`] on a failed read; [`EngineError::Layout`] when
    /// `verify_reads` finds a bad checksum.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        let mut out = Vec::with_capacity(k);
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
        let mut out = Vec::with_capacity(k);
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
            pool = pool.num_threads(t.max(1));
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
}

impl Snapshot {
    /// Opens one state of the index in `dir` (no journal recovery: [`Index::open`] does it).
    pub(crate) fn open(dir: &Path, options: OpenOptions) -> Result<Snapshot> {
        let path = dir.join(INDEX_FILE);
        let file = SectorFile::open(&path)?;
        let len = file
            .file
            .metadata()
            .map_err(|e| EngineError::io(&path, e))?
            .len();
        let mut slots = crate::io::AlignedBuf::new(2 * SECTOR_BYTES);
        if len < 2 * SECTOR_BYTES as u64 {
            return Err(ssdann_layout::LayoutError::SizeMismatch {
                path,
                expected_bytes: 8192,
                actual_bytes: len,
                detail: "the two header slots".into(),
            }
            .into());
        }
        file.file
            .read_exact_at(slots.as_mut_slice(), 0)
            .map_err(|e| EngineError::io(&path, e))?;
        let (header, _) = IndexHeader::choose(&path, slots.as_slice())?;
        if len < header.file_bytes() {
            return Err(ssdann_layout::LayoutError::SizeMismatch {
                path,
                expected_bytes: header.file_bytes(),
                actual_bytes: len,
                detail: format!(
                    "header n = {}, {} blocks",
                    header.n_slots,
                    header.layout.blocks_for(header.n_slots)
                ),
            }
            .into());
        }
        let pq = PqCodebook::read(&dir.join(PQ_PIVOTS_FILE))?;
        if pq.dim() != header.dim as usize || pq.m() != header.pq_m as usize {
            return Err(EngineError::Inconsistent {
                path: dir.join(PQ_PIVOTS_FILE),
                detail: format!(
                    "PQ pivots have d = {}, M = {} but index.ssd has d = {}, M = {}",
                    pq.dim(),
                    pq.m(),
                    header.dim,
                    header.pq_m
                ),
            });
        }
        let (cn, cm, codes) = read_codes(&dir.join(PQ_CODES_FILE))?;
        if cn as u64 != header.n_slots || cm != header.pq_m as usize {
            return Err(EngineError::Inconsistent {
                path: dir.join(PQ_CODES_FILE),
                detail: format!(
                    "PQ codes are n = {cn}, M = {cm} but index.ssd has n = {}, M = {}",
                    header.n_slots, header.pq_m
                ),
            });
        }
        let labels_path = dir.join(ssdann_layout::labels::LABELS_FILE);
        let labels = ssdann_layout::labels::read_labels(&labels_path)?;
        if labels.len() as u64 != header.n_slots {
            return Err(EngineError::Inconsistent {
                path: labels_path,
                detail: format!(
                    "{} labels but index.ssd has n = {}",
                    labels.len(),
                    header.n_slots
                ),
            });
        }
        if options.max_beam_width == 0 {
            return Err(EngineError::InvalidQuery {
                field: "max_beam_width",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let delta = crate::delta::DeltaIndex::new(
            header.dim as usize,
            header.metric,
            crate::delta::DeltaParams {
                max_degree: 1,
                build_l: 1,
                alpha: 1.0,
            },
        );
        let placeholder = crate::updates::Updates {
            delta,
            tombstones: Default::default(),
            ssd_labels: Default::default(),
            wal: None,
            wal_ops: 0,
        };
        let mut index = Snapshot {
            dir: dir.into(),
            header,
            pq,
            codes,
            labels,
            file,
            options,
            cache: NodeCache::default(),
            contexts: Mutex::new(Vec::new()),
            updates: std::sync::RwLock::new(placeholder),
            superseded: AtomicBool::new(false),
        };
        if index.options.cache_nodes > 0 {
            index.cache = index.load_cache(index.options.cache_nodes)?;
        }
        let updates = crate::updates::Updates::open(&index)?;
        index.updates = std::sync::RwLock::new(updates);
        Ok(index)
    }

    /// Reads the block holding node `id` with pread (open-time use), checking its CRC.
    fn read_block_for(&self, id: u32, buf: &mut crate::io::AlignedBuf) -> Result<()> {
        let l = self.header.layout;
        let b = l.block_of(u64::from(id));
        let off = l.block_offset_bytes(b);
        self.file
            .file
            .read_exact_at(&mut buf.as_mut_slice()[..l.block_bytes()], off)
            .map_err(|e| EngineError::io(&self.file.path, e))?;
        self.check_block(&buf.as_slice()[..l.block_bytes()], b)
    }

    pub(crate) fn check_block(&self, block: &[u8], b: u64) -> Result<()> {
        check_block(block).map_err(|(expected, got)| {
            ssdann_layout::LayoutError::ChecksumMismatch {
                path: self.file.path.clone(),
                what: format!("sector {} (block {b})", self.header.layout.block_sector(b)),
                expected,
                got,
            }
            .into()
        })
    }

    /// BFS from the entry point, caching the first `count` nodes' records.
    fn load_cache(&self, count: usize) -> Result<NodeCache> {
        let l = self.header.layout;
        let count = count.min(self.header.n_slots as usize);
        let mut cache = NodeCache {
            slots: HashMap::with_capacity(count),
            records: Vec::with_capacity(count * l.record_bytes),
        };
        let mut buf = crate::io::AlignedBuf::new(l.block_bytes());
        let mut frontier = std::collections::VecDeque::new();
        let entry = self.header.entry_point as u32;
        frontier.push_back(entry);
        let mut seen = std::collections::HashSet::new();
        seen.insert(entry);
        while let Some(id) = frontier.pop_front() {
            if cache.slots.len() >= count {
                break;
            }
            self.read_block_for(id, &mut buf)?;
            let off = l.offset_in_block(u64::from(id));
            let rec = l.record(buf.as_slice(), off);
            rec.check(
                u64::from(id),
                self.header.n_slots,
                self.header.max_degree as usize,
            )
            .map_err(|detail| EngineError::Inconsistent {
                path: self.file.path.clone(),
                detail,
            })?;
            cache.slots.insert(id, cache.records.len());
            cache
                .records
                .extend_from_slice(&buf.as_slice()[off..off + l.record_bytes]);
            for nb in rec.neighbors() {
                if seen.insert(nb) {
                    frontier.push_back(nb);
                }
            }
        }
        Ok(cache)
    }

    pub(crate) fn dim(&self) -> usize {
        self.header.dim as usize
    }

    pub(crate) fn take_context(&self) -> SearchContext {
        let ctx = self.contexts.lock().ok().and_then(|mut v| v.pop());
        ctx.unwrap_or_else(|| {
            let l = self.header.layout;
            let reader = make_reader(
                self.options.io,
                self.file.clone(),
                l.block_bytes(),
                self.options.max_beam_width,
            );
            SearchContext::new(reader, self.pq.m())
        })
    }

    pub(crate) fn put_context(&self, ctx: SearchContext) {
        if let Ok(mut v) = self.contexts.lock() {
            v.push(ctx);
        }
    }

    /// Checks a query and parameters.
    fn check_query(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<()> {
        let bad = |field: &'static str, value: String, reason: String| {
            Err(EngineError::InvalidQuery {
                field,
                value,
                reason,
            })
        };
        if query.len() != self.dim() {
            return bad(
                "query dimension",
                query.len().to_string(),
                format!("the index has d = {}", self.dim()),
            );
        }
        if let Some(i) = query.iter().position(|x| !x.is_finite()) {
            return bad(
                "query",
                format!("{} at position {i}", query[i]),
                "values must be finite".into(),
            );
        }
        if k == 0 {
            return bad("k", "0".into(), "must be at least 1".into());
        }
        if params.l < k {
            return bad("L", params.l.to_string(), format!("must be ≥ k ({k})"));
        }
        if params.w == 0 || params.w > self.options.max_beam_width {
            return bad(
                "W",
                params.w.to_string(),
                format!(
                    "must be in 1..={} (OpenOptions::max_beam_width)",
                    self.options.max_beam_width
                ),
            );
        }
        Ok(())
    }

    /// [`Index::search_into`] on this state.
    pub(crate) fn search_into(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        out: &mut Vec<Neighbor>,
    ) -> Result<SearchStats> {
        self.check_query(query, k, params)?;
        let mut ctx = self.take_context();
        let up = self.updates.read().map_err(|_| EngineError::Inconsistent {
            path: self.dir.clone(),
            detail: "update lock poisoned by a panic".into(),
        })?;
        let r = if up.delta.live() == 0 && up.tombstones.is_empty() {
            beam_search(self, &mut ctx, query, k, params, out)
        } else {
            // Over-fetch from the SSD so that k survive the tombstones, then merge with the
            // delta index by distance (FreshDiskANN §3).
            let k_ssd = (k + up.tombstones.len()).min(params.l);
            let r = beam_search(self, &mut ctx, query, k_ssd, params, out);
            out.retain(|n| !up.tombstones.contains(&n.id));
            let (q, scratch, found) = ctx.delta_buffers();
            q.clear();
            q.extend_from_slice(query);
            if self.header.metric == Metric::Cosine {
                ssdann_layout::distance::normalize(q);
            }
            up.delta.search(q, k, params.l, scratch, found);
            out.extend(found.iter().map(|&(d, id)| Neighbor {
                id,
                distance: self.header.metric.reported(d),
            }));
            out.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
            out.truncate(k);
            r
        };
        drop(up);
        self.put_context(ctx);
        r
    }
}
