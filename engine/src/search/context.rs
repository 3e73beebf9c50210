//! [`SearchContext`]: a search thread's reusable state — reader and buffers, candidate list,
//! visited sets, ADC table — and [`ContextPool`], the contexts of one index state. No heap
//! allocation per query once a context is warm.

use super::visited::HashVisited;
use crate::io::{make_reader, ReadReq, SectorReader};
use crate::state::State;
use ssdann_builder::neighbor_queue::{Candidate, NeighborQueue};
use ssdann_layout::distance::scalar::f16_le_values;
use ssdann_layout::distance::{dot_f32, dot_f32_f16, l2_sq_f32, l2_sq_f32_f16};
use ssdann_layout::pq::PQ_CENTROIDS;
use ssdann_layout::sector::NodeLayout;
use ssdann_layout::{ElementType, Metric};
use std::sync::Mutex;

/// Ids a search is expected to visit before its visited set first grows (L = 100, R = 64
/// visits a few thousand).
const VISITED_EXPECTED: usize = 8192;

/// Per-thread reusable state: reader and buffers, candidate list, visited sets, ADC table.
/// Memory: two visited hash sets (16 B per id a search touches; 256 KB at first, independent
/// of n) + W blocks + M × 1 KB.
pub struct SearchContext {
    pub(super) reader: Box<dyn SectorReader>,
    pub(super) queue: NeighborQueue,
    pub(super) visited: HashVisited,
    pub(super) table: Vec<f32>,
    /// The residual ADC table (M₂ × 256) of an index with neighbour codes; empty otherwise.
    pub(super) table2: Vec<f32>,
    pub(super) query: Vec<f32>,
    pub(super) scratch: Vec<f32>,
    pub(super) beam: Vec<Candidate>,
    pub(super) reqs: Vec<ReadReq>,
    /// (block, slot) of each block read this round.
    pub(super) blocks: Vec<(u64, usize)>,
    /// Exact distances of the nodes scored so far (and, for a merge, their vectors).
    pub(crate) scores: Scores,
    pub(super) nbrs: Vec<u32>,
    /// The neighbour codes of `nbrs` from the same record (`nbr_code_bytes` each; empty
    /// without neighbour codes).
    pub(super) nbr_codes: Vec<u8>,
    /// Nodes to expand this round: (id, buffer slot or usize::MAX for the node cache).
    pub(super) expand: Vec<(u32, usize)>,
    /// The same four for the look-ahead round whose reads are in flight
    /// (`OpenOptions::look_ahead`).
    pub(super) beam_next: Vec<Candidate>,
    pub(super) reqs_next: Vec<ReadReq>,
    pub(super) blocks_next: Vec<(u64, usize)>,
    pub(super) expand_next: Vec<(u32, usize)>,
    /// The block read into each buffer slot (u64::MAX: free; a node is expanded from a slot
    /// only while it holds the node's block), and the slots a wait reported.
    pub(super) slot_block: Vec<u64>,
    pub(super) done: Vec<usize>,
    pub(super) delta_query: Vec<f32>,
    pub(super) delta_scratch: ssdann_builder::greedy_search::SearchScratch,
    /// The navigation graph's GreedySearch state and the seeds it found.
    pub(super) nav_scratch: crate::navigation::NavScratch,
    pub(super) seeds: Vec<u32>,
    pub(super) delta_found: Vec<(f32, u64)>,
    /// When set, every node the SSD search expands is appended (the cache's sample
    /// searches count visits with it).
    pub(crate) expanded_log: Option<Vec<u32>>,
    /// The process that created the context (and its reader: an io_uring ring is not
    /// usable across a fork).
    pid: u32,
    /// The largest beam width W this context's reader has buffer slots for.
    pub(crate) max_w: usize,
}

/// The nodes a search has scored: each once, with its exact distance from its stored vector.
pub(crate) struct Scores {
    pub(super) scored: HashVisited,
    pub(super) results: Vec<(f32, u32)>,
    pub(super) tmp: Vec<f32>,
    /// The `track_k` best distances so far, ascending (early termination; empty when 0).
    k_best: Vec<f32>,
    track_k: usize,
    /// When set (merge), the full vector of every node scored is kept: ids and n × d f32.
    pub(crate) keep_vectors: bool,
    pub(crate) kept_ids: Vec<u32>,
    pub(crate) kept_vectors: Vec<f32>,
    /// With `keep_vectors` on an index with neighbour codes: every node the search visited
    /// and the code its lister's record holds for it (ids, then ids.len() × code bytes).
    pub(crate) kept_code_ids: Vec<u32>,
    pub(crate) kept_codes: Vec<u8>,
}

impl Scores {
    /// Clears the scores; `track_k` > 0 keeps the `track_k` best distances (early termination).
    pub(super) fn reset(&mut self, track_k: usize) {
        self.scored.reset();
        self.results.clear();
        self.k_best.clear();
        self.track_k = track_k;
        self.kept_ids.clear();
        self.kept_vectors.clear();
        self.kept_code_ids.clear();
        self.kept_codes.clear();
    }

    /// Scores node `id` (stored vector `vector`, raw LE bytes) unless it already was.
    #[inline]
    pub(super) fn score(
        &mut self,
        metric: Metric,
        elem: Stored,
        query: &[f32],
        id: u32,
        vector: &[u8],
    ) {
        if self.scored.insert(id) {
            let d = exact_distance(metric, elem, query, vector, &mut self.tmp);
            self.results.push((d, id));
            if self.track_k > 0
                && (self.k_best.len() < self.track_k || self.k_best.last().is_some_and(|&w| d < w))
            {
                let pos = self.k_best.partition_point(|&x| x <= d);
                self.k_best.insert(pos, d);
                self.k_best.truncate(self.track_k);
            }
            if self.keep_vectors {
                keep(elem, vector, id, &mut self.kept_ids, &mut self.kept_vectors);
            }
        }
    }
}

impl Scores {
    /// The `track_k`-th best exact distance so far, once `track_k` nodes are scored.
    pub(super) fn kth_best(&self) -> Option<f32> {
        (self.track_k > 0 && self.k_best.len() == self.track_k)
            .then(|| self.k_best[self.track_k - 1])
    }
}

impl SearchContext {
    pub(crate) fn new(reader: Box<dyn SectorReader>, m: usize) -> Self {
        SearchContext {
            reader,
            queue: NeighborQueue::new(256),
            visited: HashVisited::with_capacity(VISITED_EXPECTED),
            table: vec![0.0; m * PQ_CENTROIDS],
            table2: Vec::new(),
            query: Vec::new(),
            scratch: Vec::new(),
            beam: Vec::with_capacity(64),
            reqs: Vec::with_capacity(64),
            blocks: Vec::with_capacity(64),
            scores: Scores {
                scored: HashVisited::with_capacity(VISITED_EXPECTED),
                results: Vec::with_capacity(1024),
                tmp: Vec::new(),
                k_best: Vec::with_capacity(16),
                track_k: 0,
                keep_vectors: false,
                kept_ids: Vec::new(),
                kept_vectors: Vec::new(),
                kept_code_ids: Vec::new(),
                kept_codes: Vec::new(),
            },
            nbrs: Vec::with_capacity(256),
            nbr_codes: Vec::new(),
            expand: Vec::with_capacity(64),
            beam_next: Vec::with_capacity(64),
            reqs_next: Vec::with_capacity(64),
            blocks_next: Vec::with_capacity(64),
            expand_next: Vec::with_capacity(64),
            slot_block: Vec::with_capacity(64),
            done: Vec::with_capacity(64),
            delta_query: Vec::new(),
            delta_scratch: Default::default(),
            nav_scratch: Default::default(),
            seeds: Vec::new(),
            delta_found: Vec::new(),
            expanded_log: None,
            pid: std::process::id(),
            max_w: 0,
        }
    }
    /// Buffers for the delta-index part of a search: (query copy, GreedySearch scratch,
    /// results).
    pub(crate) fn delta_buffers(
        &mut self,
    ) -> (
        &mut Vec<f32>,
        &mut ssdann_builder::greedy_search::SearchScratch,
        &mut Vec<(f32, u64)>,
    ) {
        (
            &mut self.delta_query,
            &mut self.delta_scratch,
            &mut self.delta_found,
        )
    }
    /// The last search's `k` best results as (distance, slot), closest first.
    pub(crate) fn top_results(&self, k: usize) -> &[(f32, u32)] {
        &self.scores.results[..k.min(self.scores.results.len())]
    }
    pub(crate) fn reader_name(&self) -> &'static str {
        self.reader.name()
    }
}

/// How a record stores its vector: as the index's element type, or (format 2) as f16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// `d × element size` bytes of the element type.
    As(ElementType),
    /// `d × 2` bytes of IEEE half floats (an f32 index built with `--vector-encoding f16`).
    F16,
}

impl Stored {
    /// The encoding of `layout`'s records.
    pub(crate) fn of(layout: &NodeLayout) -> Stored {
        if layout.f16_vectors {
            Stored::F16
        } else {
            Stored::As(layout.element)
        }
    }
}

/// Exact ranking distance between the f32 query and a stored vector (raw LE bytes).
#[inline]
fn exact_distance(
    metric: Metric,
    elem: Stored,
    query: &[f32],
    vector: &[u8],
    tmp: &mut Vec<f32>,
) -> f32 {
    let v: &[f32] = match elem {
        // straight from the record's bytes (F16C), no decoded copy
        Stored::F16 if metric.uses_l2() => return l2_sq_f32_f16(query, vector),
        Stored::F16 => return -dot_f32_f16(query, vector),
        Stored::As(ElementType::F32) => match bytemuck::try_cast_slice::<u8, f32>(vector) {
            Ok(s) => s,
            Err(_) => {
                tmp.clear();
                tmp.extend(
                    vector
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                tmp
            }
        },
        Stored::As(ElementType::U8) => {
            tmp.clear();
            tmp.extend(vector.iter().map(|&x| f32::from(x)));
            tmp
        }
        Stored::As(ElementType::I8) => {
            tmp.clear();
            tmp.extend(vector.iter().map(|&x| f32::from(x as i8)));
            tmp
        }
    };
    if metric.uses_l2() {
        l2_sq_f32(query, v)
    } else {
        -dot_f32(query, v)
    }
}

/// Appends a stored vector (raw LE bytes) as f32 to the kept set.
fn keep(elem: Stored, vector: &[u8], id: u32, ids: &mut Vec<u32>, out: &mut Vec<f32>) {
    ids.push(id);
    match elem {
        Stored::F16 => out.extend(f16_le_values(vector)),
        Stored::As(ElementType::F32) => out.extend(
            vector
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Stored::As(ElementType::U8) => out.extend(vector.iter().map(|&x| f32::from(x))),
        Stored::As(ElementType::I8) => out.extend(vector.iter().map(|&x| f32::from(x as i8))),
    }
}

/// The search contexts of one index state, reused across queries (each bound to that
/// state's sector file).
///
/// Fork: a forked child inherits the pool, but not the use of its contexts — their io_uring
/// rings are mapped shared with the parent and read into the parent's registered buffers,
/// so a child that searched with them would read garbage and disturb the parent. Each
/// context records the process that created it; [`ContextPool::take`] never hands one out
/// in another process: it drops it (a `UringReader` dropped in a child closes only the
/// child's copy of the ring and leaks the child's copy of the buffer) and makes a fresh one.
#[derive(Default)]
pub(crate) struct ContextPool {
    contexts: Mutex<Vec<SearchContext>>,
}

impl ContextPool {
    /// A context for a search on `state` at beam width `w` (≤ [`crate::options::MAX_W`]):
    /// a pooled one created in this process with buffers for W ≥ `w`, or a new one (its
    /// reader per `state.options.io`, with buffer slots for W = max(`w`, `max_beam_width`);
    /// twice that with `look_ahead`, whose next round reads while this one is expanded).
    /// A search at a W beyond every pooled context's allocates a context once; later ones
    /// at that W reuse it.
    pub(crate) fn take(&self, state: &State, w: usize) -> SearchContext {
        self.pop_own(std::process::id(), w).unwrap_or_else(|| {
            let max_w = w.max(state.options.max_beam_width);
            let slots = max_w * if state.options.look_ahead { 2 } else { 1 };
            let reader = make_reader(
                state.options.io,
                state.file.clone(),
                state.header.layout.block_bytes(),
                slots,
                state.options.busy_poll_us,
            );
            let mut ctx = SearchContext::new(reader, state.pq.m());
            ctx.max_w = max_w;
            ctx
        })
    }

    /// A pooled context created in process `pid` with buffers for beam width `w`, if any;
    /// drops those of other processes it finds on the way (outside the lock).
    fn pop_own(&self, pid: u32, w: usize) -> Option<SearchContext> {
        let mut foreign = Vec::new(); // allocates only in a forked child, once
        let mut own = None;
        if let Ok(mut v) = self.contexts.lock() {
            let mut i = v.len();
            while i > 0 {
                i -= 1;
                if v[i].pid != pid {
                    foreign.push(v.swap_remove(i));
                } else if v[i].max_w >= w {
                    own = Some(v.swap_remove(i));
                    break;
                }
            }
        }
        drop(foreign);
        own
    }

    /// Returns a context to the pool — unless its reader is not reusable (reads still in
    /// flight, e.g. ones a failing ring could not wait for): then it is dropped (its reader's
    /// `Drop` waits for them or leaks the buffer), and a later search makes a new one.
    pub(crate) fn put(&self, ctx: SearchContext) {
        if !ctx.reader.reusable() {
            return;
        }
        if let Ok(mut v) = self.contexts.lock() {
            v.push(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
    use super::*;
    use crate::io::{IoBackend, SectorFile, IO_ALIGN};

    fn context(pid: u32) -> SearchContext {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; IO_ALIGN]).unwrap();
        let file = SectorFile::open(&path).unwrap();
        let mut c = SearchContext::new(make_reader(IoBackend::Pread, file, IO_ALIGN, 2, 0), 1);
        c.pid = pid;
        c
    }

    #[test]
    fn the_pool_never_hands_out_a_context_of_another_process() {
        let pool = ContextPool::default();
        let here = std::process::id();
        pool.put(context(here));
        pool.put(context(here.wrapping_add(1))); // as if pooled by the parent before a fork
        let taken = pool.pop_own(here, 0);
        assert_eq!(taken.map(|c| c.pid), Some(here));
        let v = pool.contexts.lock().unwrap();
        assert!(v.is_empty(), "the foreign context was dropped on the way");
    }

    #[test]
    fn a_context_whose_reader_has_reads_in_flight_is_not_pooled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 2 * IO_ALIGN]).unwrap();
        let file = SectorFile::open(&path).unwrap();
        let Ok(mut reader) = crate::io::UringReader::new(file, IO_ALIGN, 2) else {
            eprintln!("NOTE: io_uring unavailable here; nothing to test");
            return;
        };
        reader.submit(ReadReq { offset: 0, slot: 0 }).unwrap();
        let pool = ContextPool::default();
        pool.put(SearchContext::new(Box::new(reader), 1));
        assert!(pool.pop_own(std::process::id(), 0).is_none());
    }
}
