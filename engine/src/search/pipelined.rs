//! Pipelined beam search (PipeANN, Guo & Lu, OSDI 2025): up to W reads in flight, the next
//! one issued as soon as any completes (experimental; `OpenOptions::pipeline`).

use super::beam::{expand_from_slot, push_neighbors};
use super::context::{SearchContext, Stored};
use super::{SearchParams, SearchStats};
use crate::io::ReadReq;
use crate::state::State;
use crate::Result;
use std::time::Instant;

/// The pipelined search loop (PipeANN, Guo & Lu, OSDI 2025, idea: do not wait for the
/// slowest read of a round). Up to W reads stay in flight; as soon as one block arrives its
/// nodes are scored and its waiting candidates (and, with sector reuse, its co-located
/// candidates) expanded, and the next closest unexpanded candidate's read goes out at once.
/// `hops` counts the waits.
pub(super) fn pipelined(
    index: &State,
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
                ctx.scores.score(
                    h.metric,
                    Stored::of(&h.layout),
                    &ctx.query,
                    c.id,
                    rec.vector,
                );
                super::beam::take_list(&mut ctx.nbrs, &mut ctx.nbr_codes, &rec);
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
                if index.labels.is_free(id as usize) {
                    continue;
                }
                let rec = layout.record(ctx.reader.slot(s), layout.offset_in_block(u64::from(id)));
                ctx.scores
                    .score(h.metric, Stored::of(&h.layout), &ctx.query, id, rec.vector);
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
