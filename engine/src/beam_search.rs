//! DiskANN beam search (NeurIPS 2019, §3.3) over the sector file.
//!
//! 1. ADC table of the query (M × 256 f32).
//! 2. Candidate list of size L (PQ distances), seeded with the entry point.
//! 3. Each round takes the W closest unexpanded candidates; cached ones are expanded from
//!    RAM, the others' blocks are read in ONE batch (one io_uring submission). Each expanded
//!    node's exact distance (from its full vector) goes into the result set; its unvisited
//!    neighbours get PQ distances and enter the list. Every other node in a fetched block
//!    also gets its exact distance for free (its vector is in the same sector; Starling,
//!    SIGMOD 2024, uses the whole sector the same way).
//! 4. Stops when all L candidates are expanded; returns the k best by exact distance.

use crate::error::EngineError;
use crate::index::{Neighbor, SearchParams, SearchStats, Snapshot};
use crate::io::{ReadReq, SectorReader};
use crate::visited::HashVisited;
use crate::Result;
use ssdann_builder::neighbor_queue::{Candidate, NeighborQueue};
use ssdann_layout::distance::{dot_f32, l2_sq_f32, normalize};
use ssdann_layout::pq::{pq_distance, PQ_CENTROIDS};
use ssdann_layout::{ElementType, Metric};
use std::time::Instant;

/// Ids a search is expected to visit before its visited set first grows (L = 100, R = 64
/// visits a few thousand).
const VISITED_EXPECTED: usize = 8192;

/// Per-thread reusable state: reader and buffers, candidate list, visited sets, ADC table.
/// Memory: two visited hash sets (16 B per id a search touches; 256 KB at first, independent
/// of n) + W blocks + M × 1 KB.
pub struct SearchContext {
    reader: Box<dyn SectorReader>,
    queue: NeighborQueue,
    visited: HashVisited,
    table: Vec<f32>,
    query: Vec<f32>,
    scratch: Vec<f32>,
    beam: Vec<Candidate>,
    reqs: Vec<ReadReq>,
    /// (block, slot) of each block read this round.
    blocks: Vec<(u64, usize)>,
    /// Exact distances of the nodes scored so far (and, for a merge, their vectors).
    pub(crate) scores: Scores,
    nbrs: Vec<u32>,
    /// Nodes to expand this round: (id, buffer slot or usize::MAX for the node cache).
    expand: Vec<(u32, usize)>,
    /// Pipelined search: the block read into each buffer slot (u64::MAX: free), the
    /// candidates waiting for a slot's read, and the slots a wait reported.
    slot_block: Vec<u64>,
    waiting: Vec<(u32, usize)>,
    done: Vec<usize>,
    delta_query: Vec<f32>,
    delta_scratch: ssdann_builder::greedy_search::SearchScratch,
    delta_found: Vec<(f32, u64)>,
}

/// The nodes a search has scored: each once, with its exact distance from its stored vector.
pub(crate) struct Scores {
    scored: HashVisited,
    results: Vec<(f32, u32)>,
    tmp: Vec<f32>,
    /// When set (merge), the full vector of every node scored is kept: ids and n × d f32.
    pub(crate) keep_vectors: bool,
    pub(crate) kept_ids: Vec<u32>,
    pub(crate) kept_vectors: Vec<f32>,
}

impl Scores {
    fn reset(&mut self) {
        self.scored.reset();
        self.results.clear();
        self.kept_ids.clear();
        self.kept_vectors.clear();
    }

    /// Scores node `id` (stored vector `vector`, raw LE bytes) unless it already was.
    #[inline]
    fn score(&mut self, metric: Metric, elem: ElementType, query: &[f32], id: u32, vector: &[u8]) {
        if self.scored.insert(id) {
            let d = exact_distance(metric, elem, query, vector, &mut self.tmp);
            self.results.push((d, id));
            if self.keep_vectors {
                keep(elem, vector, id, &mut self.kept_ids, &mut self.kept_vectors);
            }
        }
    }
}

impl SearchContext {
    pub(crate) fn new(reader: Box<dyn SectorReader>, m: usize) -> Self {
        SearchContext {
            reader,
            queue: NeighborQueue::new(256),
            visited: HashVisited::with_capacity(VISITED_EXPECTED),
            table: vec![0.0; m * PQ_CENTROIDS],
            query: Vec::new(),
            scratch: Vec::new(),
            beam: Vec::with_capacity(64),
            reqs: Vec::with_capacity(64),
            blocks: Vec::with_capacity(64),
            scores: Scores {
                scored: HashVisited::with_capacity(VISITED_EXPECTED),
                results: Vec::with_capacity(1024),
                tmp: Vec::new(),
                keep_vectors: false,
                kept_ids: Vec::new(),
                kept_vectors: Vec::new(),
            },
            nbrs: Vec::with_capacity(256),
            expand: Vec::with_capacity(64),
            slot_block: Vec::with_capacity(64),
            waiting: Vec::with_capacity(64),
            done: Vec::with_capacity(64),
            delta_query: Vec::new(),
            delta_scratch: Default::default(),
            delta_found: Vec::new(),
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

/// Exact ranking distance between the f32 query and a stored vector (raw LE bytes).
#[inline]
fn exact_distance(
    metric: Metric,
    elem: ElementType,
    query: &[f32],
    vector: &[u8],
    tmp: &mut Vec<f32>,
) -> f32 {
    let v: &[f32] = match elem {
        ElementType::F32 => match bytemuck::try_cast_slice::<u8, f32>(vector) {
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
        ElementType::U8 => {
            tmp.clear();
            tmp.extend(vector.iter().map(|&x| f32::from(x)));
            tmp
        }
        ElementType::I8 => {
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
fn keep(elem: ElementType, vector: &[u8], id: u32, ids: &mut Vec<u32>, out: &mut Vec<f32>) {
    ids.push(id);
    match elem {
        ElementType::F32 => out.extend(
            vector
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        ElementType::U8 => out.extend(vector.iter().map(|&x| f32::from(x))),
        ElementType::I8 => out.extend(vector.iter().map(|&x| f32::from(x as i8))),
    }
}

pub(crate) fn beam_search(
    index: &Snapshot,
    ctx: &mut SearchContext,
    query: &[f32],
    k: usize,
    params: &SearchParams,
    out: &mut Vec<Neighbor>,
) -> Result<SearchStats> {
    let t0 = Instant::now();
    let h = &index.header;
    let layout = h.layout;
    let m = index.pq.m();
    let n = h.n_slots;
    let mut stats = SearchStats::default();
    ctx.query.clear();
    ctx.query.extend_from_slice(query);
    if h.metric == Metric::Cosine {
        normalize(&mut ctx.query);
    }
    index
        .pq
        .adc_table(&ctx.query, h.metric, &mut ctx.table, &mut ctx.scratch);
    ctx.queue.reset(params.l);
    ctx.visited.reset();
    ctx.scores.reset();
    let codes = &index.codes;
    let pq_of =
        |id: u32, table: &[f32]| pq_distance(table, &codes[id as usize * m..(id as usize + 1) * m]);
    let entry = h.entry_point as u32;
    ctx.visited.insert(entry);
    ctx.queue.insert(entry, pq_of(entry, &ctx.table));

    if index.options.pipeline {
        let mut in_flight = 0usize;
        let r = pipelined(index, ctx, params, &mut stats, &mut in_flight);
        if r.is_err() && in_flight > 0 {
            ctx.reader.drain(); // so that the context's next search finds every slot free
        }
        r?;
    }
    while !index.options.pipeline && ctx.queue.has_unexpanded() {
        ctx.beam.clear();
        ctx.queue.pop_unexpanded_beam(params.w, &mut ctx.beam);
        stats.hops += 1;
        // Plan the reads: one per distinct block among the uncached beam nodes.
        ctx.reqs.clear();
        ctx.blocks.clear();
        for c in &ctx.beam {
            if index.cache.slots.contains_key(&c.id) {
                continue;
            }
            let b = layout.block_of(u64::from(c.id));
            if !ctx.blocks.iter().any(|&(bb, _)| bb == b) {
                let slot = ctx.blocks.len();
                ctx.blocks.push((b, slot));
                ctx.reqs.push(ReadReq {
                    offset: layout.block_offset_bytes(b),
                    slot,
                });
            }
        }
        ctx.expand.clear();
        for c in &ctx.beam {
            if index.cache.slots.contains_key(&c.id) {
                ctx.expand.push((c.id, usize::MAX));
            } else {
                let b = layout.block_of(u64::from(c.id));
                let slot = ctx
                    .blocks
                    .iter()
                    .find(|&&(bb, _)| bb == b)
                    .map_or(usize::MAX, |&(_, s)| s);
                ctx.expand.push((c.id, slot));
            }
        }
        if !ctx.reqs.is_empty() {
            let t = Instant::now();
            {
                // Shared with other searches; a merge's in-place writes take it exclusively.
                // `read` (not `read_recursive`) queues behind a waiting writer, so a stream of
                // overlapping searches cannot starve the merge; it is never held twice here.
                let _gate = index.file.gate.read();
                ctx.reader.read_batch(&ctx.reqs)?;
            }
            stats.io_wait_us += t.elapsed().as_secs_f64() * 1e6;
            stats.sector_reads += (ctx.reqs.len() * layout.sectors_per_block) as u32;
            if index.options.verify_reads {
                for &(b, slot) in &ctx.blocks {
                    index.check_block(ctx.reader.slot(slot), b)?;
                }
            }
            // Every node of every fetched block: exact distance for free; with sector reuse,
            // co-located nodes that are still unexpanded candidates are expanded now too.
            for &(b, slot) in &ctx.blocks {
                let block = ctx.reader.slot(slot);
                let first = b * layout.nodes_per_block as u64;
                for id in first..(first + layout.nodes_per_block as u64).min(n) {
                    let id = id as u32;
                    // a free slot (deleted, not reused by a merge) is never a result
                    if index.labels[id as usize] == ssdann_layout::labels::FREE_LABEL {
                        continue;
                    }
                    let rec = layout.record(block, layout.offset_in_block(u64::from(id)));
                    ctx.scores
                        .score(h.metric, h.element, &ctx.query, id, rec.vector);
                }
            }
        }
        // Expand the beam, then (sector reuse) every co-located node of a fetched block that
        // the beam's expansions made a candidate: its record is already in RAM.
        let beam_len = ctx.expand.len();
        let mut i = 0;
        loop {
            if i == ctx.expand.len() {
                if i == beam_len && index.options.sector_reuse {
                    for bi in 0..ctx.blocks.len() {
                        let (b, slot) = ctx.blocks[bi];
                        let first = b * layout.nodes_per_block as u64;
                        for id in first..(first + layout.nodes_per_block as u64).min(n) {
                            if ctx.queue.mark_expanded(id as u32) {
                                ctx.expand.push((id as u32, slot));
                            }
                        }
                    }
                }
                if i == ctx.expand.len() {
                    break;
                }
            }
            let (id, slot) = ctx.expand[i];
            stats.nodes_expanded += 1;
            ctx.nbrs.clear();
            if slot == usize::MAX {
                let off = *index
                    .cache
                    .slots
                    .get(&id)
                    .ok_or_else(|| EngineError::Inconsistent {
                        path: index.file.path.clone(),
                        detail: format!("node {id} is neither cached nor read"),
                    })?;
                stats.cache_hits += 1;
                let rec = layout.record(&index.cache.records, off);
                ctx.scores
                    .score(h.metric, h.element, &ctx.query, id, rec.vector);
                ctx.nbrs.extend(rec.neighbors());
            } else {
                list_from_slot(index, ctx, id, slot)?;
            }
            push_neighbors(index, ctx, id)?;
            i += 1;
        }
    }
    let results = &mut ctx.scores.results;
    let kk = k.min(results.len());
    if kk > 0 && results.len() > kk {
        results.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }
    results[..kk].sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out.clear();
    out.extend(results[..kk].iter().map(|&(d, id)| Neighbor {
        id: index.labels[id as usize],
        distance: h.metric.reported(d),
    }));
    stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
    Ok(stats)
}

/// Adds the neighbours of node `id` (listed in `ctx.nbrs`) to the candidate list with their
/// PQ distances.
fn push_neighbors(index: &Snapshot, ctx: &mut SearchContext, id: u32) -> Result<()> {
    let n = index.header.n_slots;
    let m = index.pq.m();
    for j in 0..ctx.nbrs.len() {
        let nb = ctx.nbrs[j];
        if u64::from(nb) >= n {
            if index.superseded.load(std::sync::atomic::Ordering::Acquire) {
                continue; // a slot the running merge adds: not part of this state
            }
            return Err(EngineError::Inconsistent {
                path: index.file.path.clone(),
                detail: format!("node {id} lists neighbour {nb} ≥ n = {n}"),
            });
        }
        if ctx.visited.insert(nb) {
            let d = pq_distance(
                &ctx.table,
                &index.codes[nb as usize * m..(nb as usize + 1) * m],
            );
            ctx.queue.insert(nb, d);
        }
    }
    Ok(())
}

/// Copies node `id`'s list from the block in buffer slot `slot` into `ctx.nbrs`, checking
/// its degree against R.
fn list_from_slot(index: &Snapshot, ctx: &mut SearchContext, id: u32, slot: usize) -> Result<()> {
    let h = &index.header;
    let layout = h.layout;
    let rec = layout.record(ctx.reader.slot(slot), layout.offset_in_block(u64::from(id)));
    if rec.degree > h.max_degree {
        let b = layout.block_of(u64::from(id));
        return Err(EngineError::Inconsistent {
            path: index.file.path.clone(),
            detail: format!(
                "sector {}: node {id} has degree {} > R = {}",
                layout.block_sector(b),
                rec.degree,
                h.max_degree
            ),
        });
    }
    ctx.nbrs.clear();
    ctx.nbrs.extend(rec.neighbors());
    Ok(())
}

/// Expands node `id` from the block in buffer slot `slot`: its list joins the candidates.
fn expand_from_slot(
    index: &Snapshot,
    ctx: &mut SearchContext,
    id: u32,
    slot: usize,
    stats: &mut SearchStats,
) -> Result<()> {
    list_from_slot(index, ctx, id, slot)?;
    stats.nodes_expanded += 1;
    push_neighbors(index, ctx, id)
}

/// The pipelined search loop (PipeANN, Guo & Lu, OSDI 2025, idea: do not wait for the
/// slowest read of a round). Up to W reads stay in flight; as soon as one block arrives its
/// nodes are scored and its waiting candidates (and, with sector reuse, its co-located
/// candidates) expanded, and the next closest unexpanded candidate's read goes out at once.
/// `hops` counts the waits.
fn pipelined(
    index: &Snapshot,
    ctx: &mut SearchContext,
    params: &SearchParams,
    stats: &mut SearchStats,
    in_flight: &mut usize,
) -> Result<()> {
    let h = &index.header;
    let layout = h.layout;
    let n = h.n_slots;
    let w = params.w;
    ctx.slot_block.clear();
    ctx.slot_block.resize(w, u64::MAX);
    ctx.waiting.clear();
    // held for the whole search: a merge's in-place writes wait for it (fair lock, taken once)
    let _gate = index.file.gate.read();
    loop {
        while *in_flight < w {
            let Some(c) = ctx.queue.pop_unexpanded() else {
                break;
            };
            if let Some(&off) = index.cache.slots.get(&c.id) {
                let rec = layout.record(&index.cache.records, off);
                ctx.scores
                    .score(h.metric, h.element, &ctx.query, c.id, rec.vector);
                ctx.nbrs.clear();
                ctx.nbrs.extend(rec.neighbors());
                stats.cache_hits += 1;
                stats.nodes_expanded += 1;
                push_neighbors(index, ctx, c.id)?;
                continue;
            }
            let b = layout.block_of(u64::from(c.id));
            if let Some(s) = ctx.slot_block.iter().position(|&x| x == b) {
                ctx.waiting.push((c.id, s));
                continue;
            }
            let Some(s) = ctx.slot_block.iter().position(|&x| x == u64::MAX) else {
                break;
            };
            ctx.reader.submit(ReadReq {
                offset: layout.block_offset_bytes(b),
                slot: s,
            })?;
            ctx.slot_block[s] = b;
            ctx.waiting.push((c.id, s));
            *in_flight += 1;
            stats.sector_reads += layout.sectors_per_block as u32;
        }
        if *in_flight == 0 {
            if ctx.queue.has_unexpanded() {
                continue;
            }
            return Ok(());
        }
        let t = Instant::now();
        ctx.done.clear();
        ctx.reader.wait_any(&mut ctx.done)?;
        *in_flight -= ctx.done.len();
        stats.io_wait_us += t.elapsed().as_secs_f64() * 1e6;
        stats.hops += 1;
        for di in 0..ctx.done.len() {
            let s = ctx.done[di];
            let b = ctx.slot_block[s];
            if index.options.verify_reads {
                index.check_block(ctx.reader.slot(s), b)?;
            }
            let first = b * layout.nodes_per_block as u64;
            for id in first..(first + layout.nodes_per_block as u64).min(n) {
                let id = id as u32;
                if index.labels[id as usize] == ssdann_layout::labels::FREE_LABEL {
                    continue;
                }
                let rec = layout.record(ctx.reader.slot(s), layout.offset_in_block(u64::from(id)));
                ctx.scores
                    .score(h.metric, h.element, &ctx.query, id, rec.vector);
            }
            let mut k = 0;
            while k < ctx.waiting.len() {
                if ctx.waiting[k].1 == s {
                    let id = ctx.waiting.swap_remove(k).0;
                    expand_from_slot(index, ctx, id, s, stats)?;
                } else {
                    k += 1;
                }
            }
            if index.options.sector_reuse {
                for id in first..(first + layout.nodes_per_block as u64).min(n) {
                    if ctx.queue.mark_expanded(id as u32) {
                        expand_from_slot(index, ctx, id as u32, s, stats)?;
                    }
                }
            }
            ctx.slot_block[s] = u64::MAX;
        }
    }
}
