//! DiskANN beam search (NeurIPS 2019, §3.3) over the sector file.
//!
//! 1. ADC table of the query (M × 256 f32).
//! 2. Candidate list of size L (PQ distances), seeded with the entry point — or, with an
//!    in-memory navigation graph ([`crate::navigation`]), with its nodes nearest the query.
//! 3. Each round takes the W closest unexpanded candidates; cached ones are expanded from
//!    RAM, the others' blocks are read in ONE batch (one io_uring submission). Each expanded
//!    node's exact distance (from its full vector) goes into the result set; its unvisited
//!    neighbours get PQ distances and enter the list. Every other node in a fetched block
//!    also gets its exact distance for free (its vector is in the same sector; Starling,
//!    SIGMOD 2024, uses the whole sector the same way).
//! 4. Stops when all L candidates are expanded; returns the k best by exact distance.
//!
//! With an early-termination ratio r (`SearchParams::termination_ratio`, by default the
//! index's own, taken from PQ's error on near pairs: [`ssdann_layout::near_error`]), step 4
//! stops early too: as soon as the closest unexpanded candidate's PQ distance exceeds r ×
//! the k-th best exact distance d_k — or, where d_k is below the index's typical neighbour
//! distance s, d_k + (r − 1) × s.
//!
//! With `OpenOptions::dynamic_beam` (the default), rounds take one node while the search is still
//! descending toward the query (the round found a candidate closer than the node it
//! expanded) and W from the first round that did not: the descent is a sequential walk,
//! where W − 1 of every W reads are wasted on candidates the next hop supersedes.

use super::context::{SearchContext, Stored};
use super::{Neighbor, SearchParams, SearchStats};
use crate::error::EngineError;
use crate::io::ReadReq;
use crate::state::State;
use crate::Result;
use ssdann_layout::distance::normalize;
use ssdann_layout::near_error::stop_threshold;
use ssdann_layout::pq::{pq_distance, PQ_CENTROIDS};
use ssdann_layout::sector::NodeRecord;
use ssdann_layout::Metric;
use std::time::Instant;

/// List size of the navigation graph's GreedySearch; all of its list become candidates.
const NAV_SEARCH_L: usize = 32;

pub(crate) fn beam_search(
    index: &State,
    ctx: &mut SearchContext,
    query: &[f32],
    k: usize,
    params: &SearchParams,
    out: &mut Vec<Neighbor>,
) -> Result<SearchStats> {
    let _active = crate::io::ActiveSearch::start(); // the busy-poll rule (io::uring)
    let t0 = Instant::now();
    let h = &index.header;
    let m = index.pq.m();
    let mut stats = SearchStats::default();
    ctx.query.clear();
    ctx.query.extend_from_slice(query);
    if h.metric == Metric::Cosine {
        normalize(&mut ctx.query);
    }
    index
        .pq
        .adc_table(&ctx.query, h.metric, &mut ctx.table, &mut ctx.scratch);
    if let Some(refine) = &index.refine {
        ctx.table2.resize(refine.m() * PQ_CENTROIDS, 0.0);
        refine.refine_table(
            &index.pq,
            &ctx.query,
            h.metric,
            &mut ctx.table2,
            &mut ctx.scratch,
        );
    }
    ctx.queue.reset(params.l);
    ctx.visited.reset();
    // the query's own ratio, else the index's; ∞ (off) never stops a search early
    let termination = params
        .termination_ratio
        .or(index.default_termination)
        .filter(|r| r.is_finite());
    ctx.scores.reset(if termination.is_some() { k } else { 0 });
    let codes = &index.codes;
    let pq_of =
        |id: u32, table: &[f32]| pq_distance(table, &codes[id as usize * m..(id as usize + 1) * m]);
    // Entry points: the navigation graph's nearest sample nodes when there is one (each
    // with its PQ distance, like any candidate), else the medoid.
    let mut seeded = false;
    if let Some(nav) = &index.navigation {
        ctx.seeds.clear();
        nav.seeds(
            &ctx.table,
            NAV_SEARCH_L,
            &mut ctx.nav_scratch,
            &mut ctx.seeds,
        );
        for &s in &ctx.seeds {
            if !index.labels.is_free(s as usize) && ctx.visited.insert(s) {
                ctx.queue.insert(s, pq_of(s, &ctx.table));
                seeded = true;
            }
        }
    }
    if !seeded {
        let entry = h.entry_point as u32;
        ctx.visited.insert(entry);
        ctx.queue.insert(entry, pq_of(entry, &ctx.table));
    }

    let r = rounds(index, ctx, params, termination, &mut stats);
    if r.is_err() {
        ctx.reader.drain(); // a look-ahead read may be in flight: the next search needs the slot
    }
    r?;
    let results = &mut ctx.scores.results;
    let kk = k.min(results.len());
    if kk > 0 && results.len() > kk {
        results.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }
    results[..kk].sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out.clear();
    out.extend(results[..kk].iter().map(|&(d, id)| Neighbor {
        id: index.labels.get(id as usize),
        distance: h.metric.reported(d),
    }));
    stats.total_us = t0.elapsed().as_secs_f64() * 1e6;
    Ok(stats)
}

/// The round-based search loop (step 3 of the module docs) from the seeded candidate list.
///
/// With `OpenOptions::look_ahead` (the default), once the search has converged (the first round that
/// finds nothing closer than the best node it expanded; the dynamic beam widens to W at
/// the same point) the next round's reads go out as soon as this round's land — chosen
/// from the list before this round's nodes are expanded — so that the expansion (the
/// neighbours' ADC, most of a round's CPU) runs while they are in flight (PipeANN, OSDI
/// 2025, issues reads the same way; here the round structure stays, so it also pays on a
/// disk whose completions arrive together). The price: a look-ahead round cannot include
/// the candidates the current round is about to find; before convergence, when each round
/// finds closer ones, that would cost reads (1.4× on 128-d u8), so it waits for it.
fn rounds(
    index: &State,
    ctx: &mut SearchContext,
    params: &SearchParams,
    termination: Option<f32>,
    stats: &mut SearchStats,
) -> Result<()> {
    let look_ahead = index.options.look_ahead;
    let scale = index.near_error.map_or(0.0, |e| e.scale);
    // Dynamic beam width: one node per round while descending, W once converged.
    let mut w_round = if index.options.dynamic_beam {
        1
    } else {
        params.w
    };
    // Look-ahead rounds start once the search has converged: before, a round chosen ahead
    // of the expansion would miss the closer candidates that the descent finds each round.
    let mut converged = false;
    // With look-ahead, reads stay in flight across expansions: the merge gate (see below) is
    // held for the whole search instead of per round.
    let held = look_ahead.then(|| index.file.gate.read());
    // Whether ctx.beam / reqs / blocks / expand describe a round already submitted, and the
    // first buffer slot of the current round: look-ahead rounds alternate between slots
    // 0..W and W..2W, so that a round's reads never land in the buffers being expanded.
    let mut in_flight = false;
    let mut base = 0;
    loop {
        if !in_flight {
            if !ctx.queue.has_unexpanded() || should_stop(ctx, termination, scale) {
                break;
            }
            ctx.beam.clear();
            ctx.queue.pop_unexpanded_beam(w_round, &mut ctx.beam);
            base = 0;
            plan_round(index, ctx, base);
            stats.hops += 1;
            if look_ahead {
                submit_round(ctx)?;
            }
        }
        let popped_best = ctx.beam.first().map_or(f32::INFINITY, |c| c.dist);
        if !ctx.reqs.is_empty() {
            let t = Instant::now();
            if look_ahead {
                wait_round(ctx)?;
            } else {
                // Shared with other searches; a merge's in-place writes take it exclusively.
                // `read` (not `read_recursive`) queues behind a waiting writer, so a stream of
                // overlapping searches cannot starve the merge; it is never held twice here.
                let _gate = index.file.gate.read();
                ctx.reader.read_batch(&ctx.reqs)?;
            }
            stats.io_wait_us += t.elapsed().as_secs_f64() * 1e6;
            stats.sector_reads += (ctx.reqs.len() * index.header.layout.sectors_per_block) as u32;
            score_blocks(index, ctx)?;
        }
        // Look-ahead: the next round's reads go out before this round's expansion.
        in_flight = false;
        if look_ahead && converged {
            // Candidates already in this round's blocks are expanded from RAM now, before the
            // look-ahead round is chosen: it must not read their blocks a second time.
            claim_resident(index, ctx);
        }
        if look_ahead
            && converged
            && ctx.queue.has_unexpanded()
            && !should_stop(ctx, termination, scale)
        {
            ctx.beam_next.clear();
            ctx.queue.pop_unexpanded_beam(w_round, &mut ctx.beam_next);
            swap_rounds(ctx);
            plan_round(index, ctx, params.w - base);
            submit_round(ctx)?;
            swap_rounds(ctx);
            stats.hops += 1;
            in_flight = true;
        }
        expand_round(index, ctx, stats)?;
        // Converged: this round found nothing closer than the best node it expanded.
        if !converged && ctx.queue.best_unexpanded_dist() >= popped_best {
            converged = true;
            w_round = params.w;
        }
        if in_flight {
            swap_rounds(ctx);
            base = params.w - base;
        }
    }
    drop(held);
    Ok(())
}

/// Early termination: the closest candidate left is well beyond the k-th best found —
/// by ratio r at the index's typical neighbour distance `scale` and above, by the same
/// absolute margin below it ([`ssdann_layout::near_error::stop_threshold`]).
fn should_stop(ctx: &SearchContext, termination: Option<f32>, scale: f32) -> bool {
    matches!((termination, ctx.scores.kth_best()),
        (Some(r), Some(kth)) if ctx.queue.best_unexpanded_dist() > stop_threshold(r, kth, scale))
}

/// Exchanges the current round's beam, requests, blocks and expansion list with the
/// look-ahead round's.
fn swap_rounds(ctx: &mut SearchContext) {
    std::mem::swap(&mut ctx.beam, &mut ctx.beam_next);
    std::mem::swap(&mut ctx.reqs, &mut ctx.reqs_next);
    std::mem::swap(&mut ctx.blocks, &mut ctx.blocks_next);
    std::mem::swap(&mut ctx.expand, &mut ctx.expand_next);
}

/// Plans the reads of `ctx.beam`: one per distinct block among its uncached nodes, into
/// buffer slots `first_slot..`; `ctx.expand` gets each node's slot (usize::MAX: cached).
fn plan_round(index: &State, ctx: &mut SearchContext, first_slot: usize) {
    let layout = index.header.layout;
    ctx.reqs.clear();
    ctx.blocks.clear();
    ctx.expand.clear();
    for c in &ctx.beam {
        if index.cache.slots.contains_key(&c.id) {
            ctx.expand.push((c.id, usize::MAX));
            continue;
        }
        let b = layout.block_of(u64::from(c.id));
        let slot = match ctx.blocks.iter().find(|&&(bb, _)| bb == b) {
            Some(&(_, s)) => s,
            None => {
                let s = first_slot + ctx.blocks.len();
                if ctx.slot_block.len() <= s {
                    ctx.slot_block.resize(s + 1, u64::MAX);
                }
                ctx.slot_block[s] = b;
                ctx.blocks.push((b, s));
                ctx.reqs.push(ReadReq {
                    offset: layout.block_offset_bytes(b),
                    slot: s,
                });
                s
            }
        };
        ctx.expand.push((c.id, slot));
    }
}

/// Queues the current round's reads and sends them to the device now.
fn submit_round(ctx: &mut SearchContext) -> Result<()> {
    for &r in &ctx.reqs {
        ctx.reader.submit(r)?;
    }
    ctx.reader.flush()
}

/// Waits until every read of the current round has landed (the only ones in flight).
fn wait_round(ctx: &mut SearchContext) -> Result<()> {
    let mut left = ctx.reqs.len();
    while left > 0 {
        ctx.done.clear();
        ctx.reader.wait_any(&mut ctx.done)?;
        left = left.saturating_sub(ctx.done.len());
    }
    Ok(())
}

/// Every node of every fetched block of the round gets its exact distance (for free: its
/// vector is in the sector); checks each block's CRC first with `verify_reads`.
fn score_blocks(index: &State, ctx: &mut SearchContext) -> Result<()> {
    let h = &index.header;
    let layout = h.layout;
    if index.options.verify_reads {
        for &(b, slot) in &ctx.blocks {
            index.check_block(ctx.reader.slot(slot), b)?;
        }
    }
    for &(b, slot) in &ctx.blocks {
        let block = ctx.reader.slot(slot);
        let first = b * layout.nodes_per_block as u64;
        for id in first..(first + layout.nodes_per_block as u64).min(h.n_slots) {
            let id = id as u32;
            // a free slot (deleted, not reused by a merge) is never a result
            if index.labels.is_free(id as usize) {
                continue;
            }
            let rec = layout.record(block, layout.offset_in_block(u64::from(id)));
            ctx.scores
                .score(h.metric, Stored::of(&h.layout), &ctx.query, id, rec.vector);
        }
    }
    Ok(())
}

/// Expands the round's beam, then (sector reuse) every co-located node of a fetched block
/// that the beam's expansions made a candidate: its record is already in RAM.
fn expand_round(index: &State, ctx: &mut SearchContext, stats: &mut SearchStats) -> Result<()> {
    let h = &index.header;
    let layout = h.layout;
    let beam_len = ctx.expand.len();
    let mut i = 0;
    loop {
        if i == ctx.expand.len() {
            if i == beam_len {
                claim_resident(index, ctx);
            }
            if i == ctx.expand.len() {
                return Ok(());
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
                .score(h.metric, Stored::of(&h.layout), &ctx.query, id, rec.vector);
            take_list(&mut ctx.nbrs, &mut ctx.nbr_codes, &rec);
        } else {
            list_from_slot(index, ctx, id, slot)?;
        }
        push_neighbors(index, ctx, id)?;
        i += 1;
    }
}

/// Sector reuse (`OpenOptions::sector_reuse`): every node of this round's fetched blocks
/// that is an unexpanded candidate joins this round's expansion list, `ctx.expand` (its
/// record is already in RAM).
fn claim_resident(index: &State, ctx: &mut SearchContext) {
    let layout = index.header.layout;
    if !index.options.sector_reuse || layout.nodes_per_block < 2 {
        return; // one node a block: it is the beam node itself, expanded already
    }
    for bi in 0..ctx.blocks.len() {
        let (b, slot) = ctx.blocks[bi];
        let first = b * layout.nodes_per_block as u64;
        for id in first..(first + layout.nodes_per_block as u64).min(index.header.n_slots) {
            if ctx.queue.mark_expanded(id as u32) {
                ctx.expand.push((id as u32, slot));
            }
        }
    }
}

/// Adds the neighbours of node `id` (listed in `ctx.nbrs`) to the candidate list with their
/// PQ distances — refined by their codes in `id`'s record (`ctx.nbr_codes`) when the index
/// has neighbour codes: PQ + residual ADC + the stored term (see
/// `PqCodebook::refine_table`).
pub(super) fn push_neighbors(index: &State, ctx: &mut SearchContext, id: u32) -> Result<()> {
    if let Some(log) = ctx.expanded_log.as_mut() {
        log.push(id);
    }
    let n = index.header.n_slots;
    let m = index.pq.m();
    let cb = index.header.layout.nbr_code_bytes().max(5); // empty nbr_codes without them
                                                          // The code rows are scattered over n × M bytes: ask for all of them before the first
                                                          // is needed, so that their misses overlap instead of queueing one by one.
    for &nb in &ctx.nbrs {
        if let Some(row) = index.codes.get(nb as usize * m..(nb as usize + 1) * m) {
            ssdann_layout::distance::prefetch(row, 2);
        }
    }
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
            let mut d = pq_distance(
                &ctx.table,
                &index.codes[nb as usize * m..(nb as usize + 1) * m],
            );
            if let Some(code) = ctx.nbr_codes.get(j * cb..(j + 1) * cb) {
                let (c2, t) = code.split_at(cb - 4);
                d += pq_distance(&ctx.table2, c2) + f32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                if ctx.scores.keep_vectors {
                    // a merge's search: it writes this code into the lists it builds
                    ctx.scores.kept_code_ids.push(nb);
                    ctx.scores.kept_codes.extend_from_slice(code);
                }
            }
            ctx.queue.insert(nb, d);
        }
    }
    Ok(())
}

/// Copies node `id`'s list from the block in buffer slot `slot` into `ctx.nbrs`, checking
/// its degree against R.
fn list_from_slot(index: &State, ctx: &mut SearchContext, id: u32, slot: usize) -> Result<()> {
    let h = &index.header;
    let layout = h.layout;
    // The slot must still hold the block its read was planned for: a later read planned
    // into a slot that is being expanded (look-ahead, pipelining) would hand over another
    // node's list.
    let b = layout.block_of(u64::from(id));
    if ctx.slot_block.get(slot) != Some(&b) {
        return Err(EngineError::Inconsistent {
            path: index.file.path.clone(),
            detail: format!(
                "buffer slot {slot} holds block {:?}, not node {id}'s block {b}",
                ctx.slot_block.get(slot)
            ),
        });
    }
    let rec = layout.record(ctx.reader.slot(slot), layout.offset_in_block(u64::from(id)));
    if rec.degree > h.max_degree {
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
    take_list(&mut ctx.nbrs, &mut ctx.nbr_codes, &rec);
    Ok(())
}

/// Copies a record's neighbour list (and, with neighbour codes, their codes) into the
/// context's buffers.
pub(super) fn take_list(nbrs: &mut Vec<u32>, codes: &mut Vec<u8>, rec: &NodeRecord<'_>) {
    nbrs.clear();
    nbrs.extend(rec.neighbors());
    codes.clear();
    codes.extend_from_slice(rec.neighbor_codes);
}
