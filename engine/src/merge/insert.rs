//! Insert phase of StreamingMerge (FreshDiskANN, Singh et al. 2021, §4): each new point
//! runs the disk beam search on the pre-merge index (tombstones still route, as FreshDiskANN
//! allows) and the delta graph for its candidates; RobustPrune picks its out-list;
//! back-edges are collected in memory for the patch phase.

use super::plan::Plan;
use crate::error::EngineError;
use crate::Result;
use rayon::prelude::*;
use ssdann_builder::{Phase, Progress};
use std::collections::{BTreeMap, HashMap};

/// Out-lists of the new points (slot → (list, the list's neighbour codes: `cb` bytes per
/// entry, zeros for new points, whose codes the plan holds; empty without codes)) and the
/// back-edges they ask for (slot → new slots that link to it).
pub(super) type InsertLists = (HashMap<u32, (Vec<u32>, Vec<u8>)>, BTreeMap<u32, Vec<u32>>);

/// Runs the insert phase.
///
/// # Errors
/// [`EngineError::Io`] (or a corrupt block) from a beam search.
pub(super) fn insert_phase(
    plan: &Plan,
    max_beam_width: usize,
    progress: &dyn Progress,
) -> Result<InsertLists> {
    let st = plan.st;
    let (h, d) = (&plan.h, plan.d);
    let news = &plan.frozen.news;
    let (del_set, new_set, new_slot) = (&plan.del_set, &plan.new_set, &plan.new_slot);
    let label_to_new = &plan.label_to_new;
    let dir = &st.dir;
    let mut new_adj: HashMap<u32, (Vec<u32>, Vec<u8>)> = HashMap::with_capacity(news.len());
    let cb = plan.cb;
    let mut back: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    // The insert phase's search list: R (not the build L) — the delta graph already
    // supplies the near neighbours among the new points, and a shorter list halves the
    // reads; W = 8 halves the round trips.
    let l = h.max_degree as usize;
    let sp = crate::search::SearchParams::new(l, max_beam_width.min(8)).without_termination();
    // New points are placed in parallel (each runs its own beam search and prune), on a
    // pool of 4 threads per core: the searches mostly wait on reads.
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let io_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4 * cores)
        .build()
        .map_err(|e| EngineError::io(dir, std::io::Error::other(e.to_string())))?;
    progress.start(Phase::MergeInsert, news.len() as u64);
    let lists: Vec<Result<(Vec<u32>, Vec<u8>)>> = io_pool.install(|| {
        news.par_iter()
            .enumerate()
            .map_init(
                || {
                    (
                        plan.pruner(),
                        Vec::with_capacity(l),
                        ssdann_builder::greedy_search::SearchScratch::default(),
                        Vec::new(),
                        Vec::new(),
                        Vec::new(),
                        (HashMap::new(), Vec::new()),
                    )
                },
                |(pruner, found, dscratch, dfound, pq_vec, qv, (codes, escratch)),
                 (_, (label, v))| {
                    qv.clear();
                    qv.extend_from_slice(v);
                    // Exact vectors of every node the search scored (their sectors were read
                    // anyway) make the prune exact; PQ reconstructions stand in otherwise.
                    let mut ctx = plan.snap.contexts.take(st, sp.w);
                    ctx.scores.keep_vectors = true;
                    let r = crate::search::beam_search(st, &mut ctx, v, l, &sp, found);
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
                    // Neighbour codes of the candidates: as the records that listed them hold
                    // them, else encoded from their stored vector (a search's start nodes).
                    codes.clear();
                    let listed: HashMap<u32, usize> = if cb > 0 {
                        let ids = &ctx.scores.kept_code_ids;
                        ids.iter()
                            .enumerate()
                            .rev()
                            .map(|(k, &id)| (id, k))
                            .collect()
                    } else {
                        HashMap::new()
                    };
                    for &(_, slot) in slots {
                        if del_set.contains(&slot) {
                            continue;
                        }
                        if let Some(&k) = listed.get(&slot) {
                            codes
                                .insert(slot, ctx.scores.kept_codes[k * cb..(k + 1) * cb].to_vec());
                        }
                        match kept.get(&slot) {
                            Some(&i) => {
                                let x = &ctx.scores.kept_vectors[i * d..(i + 1) * d];
                                if cb > 0 && !codes.contains_key(&slot) {
                                    let mut e = vec![0u8; cb];
                                    plan.entry_from_vector(slot, x, &mut e, escratch);
                                    codes.insert(slot, e);
                                }
                                pruner.add(slot, x)
                            }
                            // Without its vector and its code (never with codes: a scored
                            // node's vector is kept) a candidate is left out.
                            None if cb > 0 && !codes.contains_key(&slot) => {}
                            None => {
                                plan.decode(slot, pq_vec);
                                pruner.add(slot, pq_vec);
                            }
                        }
                    }
                    ctx.scores.keep_vectors = false;
                    plan.snap.contexts.put(ctx);
                    r?;
                    plan.frozen
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
                    let list = pruner.run();
                    let mut list_codes = vec![0u8; list.len() * cb];
                    if cb > 0 {
                        for (k, x) in list.iter().enumerate() {
                            if let Some(c) = codes.get(x) {
                                list_codes[k * cb..(k + 1) * cb].copy_from_slice(c);
                            }
                        }
                    }
                    Ok((list, list_codes))
                },
            )
            .collect()
    });
    for (i, list) in lists.into_iter().enumerate() {
        let (list, codes) = list?;
        let s = new_slot[i];
        for &j in &list {
            back.entry(j).or_default().push(s);
        }
        new_adj.insert(s, (list, codes));
    }
    progress.finish();
    Ok((new_adj, back))
}
