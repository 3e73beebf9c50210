//! Delete phase of StreamingMerge (FreshDiskANN, Singh et al. 2021, §4): one sequential
//! pass over the sector file; every node with a deleted out-neighbour takes the neighbours
//! of those neighbours as candidates and is repaired by RobustPrune's repair variant
//! (candidate vectors from their PQ codes, the node's own from its sector). Deleted records
//! are zeroed, except the old entry point's (searches still on the pre-merge state start
//! there) and slots this merge reuses.

use super::journal::Journal;
use super::plan::{code_in, Plan};
use super::prune::vector_f32;
use super::MergeReport;
use crate::error::EngineError;
use crate::Result;
use rayon::prelude::*;
use ssdann_builder::{Phase, Progress};
use ssdann_layout::sector::seal_block;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;

/// Replacement candidates taken from each deleted out-neighbour's list in the delete phase.
const DELETE_CANDIDATES_PER_NODE: usize = 24;

/// Runs the delete phase: repaired blocks go to `journal` in block order. Returns the entry
/// point after the merge (the old one unless it is deleted).
///
/// # Errors
/// [`EngineError::Io`], or a checksum mismatch in a block read.
pub(super) fn delete_phase(
    plan: &Plan,
    journal: &mut Journal,
    progress: &dyn Progress,
    report: &mut MergeReport,
) -> Result<u32> {
    let (h, layout, n) = (&plan.h, plan.layout, plan.n);
    let bb = layout.block_bytes();
    let old_blocks = plan.old_blocks;
    let (del_set, new_set) = (&plan.del_set, &plan.new_set);
    let deleted = &plan.frozen.deleted;
    let (file, path) = (&plan.file, &plan.path);
    let read_block = |j: &Journal, b: u64, out: &mut [u8]| plan.read_block(j, b, out);
    let decode_into = |slot: u32, out: &mut [f32]| plan.decode_into(slot, out);
    let mut block = vec![0u8; bb];
    // 1. Deleted nodes' out-lists.
    // (list, the list's neighbour codes: empty without them)
    let mut del_nbrs: HashMap<u32, (Vec<u32>, Vec<u8>)> = HashMap::with_capacity(deleted.len());
    for &s in deleted {
        read_block(journal, layout.block_of(u64::from(s)), &mut block)?;
        let rec = plan.checked_record(&block, s)?;
        del_nbrs.insert(s, (rec.neighbors().collect(), rec.neighbor_codes.to_vec()));
    }
    // 2. Delete phase: one sequential pass.
    let mut entry = h.entry_point as u32;
    if del_set.contains(&entry) {
        entry = del_nbrs
            .get(&entry)
            .and_then(|(l, _)| l.iter().copied().find(|x| !del_set.contains(x)))
            .or_else(|| (0..n as u32).find(|x| !del_set.contains(x)))
            .unwrap_or(0);
    }
    // Blocks are read in large sequential batches and repaired in parallel (rayon; one
    // Pruner per worker); changed ones go to the journal in block order.
    let batch_blocks = ((8usize << 20) / bb).max(1) as u64;
    let mut batch = vec![0u8; batch_blocks as usize * bb];
    let mut b0 = 0u64;
    progress.start(Phase::MergeDelete, old_blocks);
    while b0 < old_blocks {
        let nb = batch_blocks.min(old_blocks - b0) as usize;
        let buf = &mut batch[..nb * bb];
        file.read_exact_at(buf, layout.block_offset_bytes(b0))
            .map_err(|e| EngineError::io(path, e))?;
        let results: Vec<Result<(bool, usize)>> = buf
            .par_chunks_mut(bb)
            .enumerate()
            .map_init(
                || (plan.pruner(), Vec::new()),
                |(pruner, pv), (k, blk)| {
                    let b = b0 + k as u64;
                    plan.st.check_block(blk, b)?;
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
                                plan.write_record(
                                    blk,
                                    off,
                                    s,
                                    &vec![0u8; layout.vector_bytes()],
                                    &[],
                                    |_| None,
                                )?;
                                changed = true;
                            }
                            continue;
                        }
                        if plan.st.labels.is_free(s as usize) {
                            continue; // free since an earlier merge: nobody links to it
                        }
                        let rec = plan.checked_record(blk, s)?;
                        let nbrs: Vec<u32> = rec.neighbors().collect();
                        if !nbrs.iter().any(|x| del_set.contains(x)) {
                            continue;
                        }
                        vector_f32(&layout, rec.vector, pv);
                        let kept: Vec<u32> = nbrs
                            .iter()
                            .copied()
                            .filter(|x| !del_set.contains(x))
                            .collect();
                        let mut cands: Vec<u32> = Vec::new();
                        // Replacements: the first DELETE_CANDIDATES_PER_NODE entries of each deleted
                        // neighbour's list (its closest, in RobustPrune's output order).
                        for x in nbrs.iter().filter(|x| del_set.contains(x)) {
                            if let Some((l, _)) = del_nbrs.get(x) {
                                cands.extend(
                                    l.iter()
                                        .take(DELETE_CANDIDATES_PER_NODE)
                                        .copied()
                                        .filter(|y| !del_set.contains(y) && *y != s),
                                );
                            }
                        }
                        let vb = rec.vector.to_vec();
                        let own_codes = rec.neighbor_codes.to_vec();
                        let list = pruner.repair(pv, &kept, &cands, &decode_into);
                        // Codes: the kept neighbours' from this record, the replacements'
                        // from the deleted neighbours' records that listed them.
                        let cb = plan.cb;
                        plan.write_record(blk, off, s, &vb, &list, |y| {
                            code_in(&nbrs, &own_codes, cb, y).or_else(|| {
                                nbrs.iter()
                                    .filter_map(|x| del_nbrs.get(x))
                                    .find_map(|(l, c)| code_in(l, c, cb, y))
                            })
                        })?;
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
    Ok(entry)
}
