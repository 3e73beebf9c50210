//! Patch phase of StreamingMerge (FreshDiskANN, Singh et al. 2021, §4): every block that
//! holds a new point or a node that received back-edges is rewritten — new records written,
//! back-edges added, lists over R pruned by RobustPrune — in parallel, a chunk at a time.

use super::insert::InsertLists;
use super::journal::Journal;
use super::plan::{code_in, Plan};
use super::prune::{record_vector, vector_f32, Pruner};
use crate::Result;
use rayon::prelude::*;
use ssdann_builder::{Phase, Progress};
use ssdann_layout::sector::seal_block;
use std::collections::{BTreeMap, HashSet};

/// Runs the patch phase: the images go to `journal` in block order.
///
/// # Errors
/// [`crate::EngineError::Io`], or a checksum mismatch in a block read.
pub(super) fn patch_phase(
    plan: &Plan,
    journal: &mut Journal,
    lists: &InsertLists,
    progress: &dyn Progress,
) -> Result<()> {
    let (new_adj, back) = lists;
    let (h, layout) = (&plan.h, plan.layout);
    let bb = layout.block_bytes();
    let news = &plan.frozen.news;
    let (new_set, new_slot) = (&plan.new_set, &plan.new_slot);
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
        plan.read_block(j, b, &mut block)?;
        let mut done = HashSet::new();
        for &s in slots {
            if !done.insert(s) {
                continue;
            }
            let off = layout.offset_in_block(u64::from(s));
            // (vector bytes, list, own vector, the list's codes as they were found: the
            // insert phase's for a new point, the record's for a patched one)
            let (vbytes, mut list, own, codes): (Vec<u8>, Vec<u32>, Vec<f32>, Vec<u8>) =
                match new_set.get(&s) {
                    Some(&i) => {
                        let (l, c) = new_adj.get(&s).cloned().unwrap_or_default();
                        (record_vector(&layout, &news[i].1), l, news[i].1.clone(), c)
                    }
                    None => {
                        let rec = plan.checked_record(&block, s)?;
                        vector_f32(&layout, rec.vector, pv);
                        (
                            rec.vector.to_vec(),
                            rec.neighbors().collect(),
                            pv.clone(),
                            rec.neighbor_codes.to_vec(),
                        )
                    }
                };
            let found: Vec<u32> = if plan.cb > 0 {
                list.clone()
            } else {
                Vec::new()
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
                            plan.decode(c, pq_vec);
                            pruner.add(c, pq_vec);
                        }
                    }
                }
                list = pruner.run();
            }
            let cb = plan.cb;
            plan.write_record(&mut block, off, s, &vbytes, &list, |x| {
                code_in(&found, &codes, cb, x)
            })?;
        }
        seal_block(&mut block);
        Ok(block)
    };
    progress.start(Phase::MergePatch, touched.len() as u64);
    for chunk in touched.chunks(1024) {
        progress.advance(chunk.len() as u64);
        let j = &*journal;
        let images: Vec<Result<Vec<u8>>> = chunk
            .par_iter()
            .map_init(
                || (plan.pruner(), Vec::new(), Vec::new()),
                |(pruner, pv, pq_vec), (b, slots)| patch_block(j, pruner, pv, pq_vec, *b, slots),
            )
            .collect();
        for ((b, _), image) in chunk.iter().zip(images) {
            journal.append(*b, &image?)?;
        }
    }
    progress.finish();
    Ok(())
}
