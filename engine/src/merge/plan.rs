//! What a merge folds in ([`Frozen`], copied under the update lock) and its slot plan
//! ([`Plan`]): which slots the new points take, and the read access every phase shares.
//!
//! Slot plan: slots this merge frees first, then slots earlier merges left free, then
//! growth past n (FreshDiskANN §4: reuse freed slots before growing the file).

use super::journal::Journal;
use super::prune::Pruner;
use crate::error::EngineError;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::Result;
use rayon::prelude::*;
use ssdann_builder::build::INDEX_FILE;
use ssdann_builder::robust_prune::PruneScratch;
use ssdann_layout::labels::FREE_LABEL;
use ssdann_layout::{IndexHeader, NodeLayout};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// The updates a merge folds in, copied under the update lock so that inserts and deletes
/// can go on while it runs: SSD slots to delete, new points, the delta graph (for the insert
/// phase's candidates) and the last WAL sequence number they cover.
pub(crate) struct Frozen {
    pub(crate) deleted: Vec<u32>,
    pub(crate) news: Vec<(u64, Vec<f32>)>,
    pub(crate) delta: crate::updates::delta::DeltaIndex,
    pub(crate) wal_seq: u64,
}

impl Frozen {
    /// Copies the pending updates of `snap` (the caller holds the index's update gate).
    ///
    /// # Errors
    /// [`EngineError::Inconsistent`] when the update lock was poisoned by a panic.
    pub(crate) fn of(snap: &Snapshot) -> Result<Frozen> {
        let up = snap.updates.read().map_err(|_| EngineError::Inconsistent {
            path: snap.state.dir.clone(),
            detail: "update lock poisoned".into(),
        })?;
        let labels = &snap.state.labels;
        let mut deleted: Vec<u32> = up
            .tombstones
            .iter()
            .filter_map(|&l| up.ssd_slot(l, labels))
            .collect();
        deleted.sort_unstable();
        let news = up
            .delta
            .live_points()
            .map(|(l, v)| (l, v.to_vec()))
            .collect();
        Ok(Frozen {
            deleted,
            news,
            delta: up.delta.clone(),
            wal_seq: snap.wal_last_seq(),
        })
    }
}

/// The neighbour code of a point with vector `x` and PQ code `code` under `state`'s
/// residual codebook (a no-op for an index without one).
fn entry_of(
    state: &State,
    metric: ssdann_layout::Metric,
    x: &[f32],
    code: &[u8],
    out: &mut [u8],
    scratch: &mut Vec<f32>,
) {
    if let Some(refine) = &state.refine {
        refine.encode_refinement(&state.pq, x, code, metric, out, scratch);
    }
}

/// Records' neighbour codes by slot, looked up by a linear scan (one record's list: ≤ R).
pub(super) fn code_in<'a>(ids: &[u32], codes: &'a [u8], cb: usize, slot: u32) -> Option<&'a [u8]> {
    let k = ids.iter().position(|&x| x == slot)?;
    codes.get(k * cb..(k + 1) * cb)
}

/// Slots after a merge of `news` new points into `n` slots of which `free` can be reused:
/// None past the format's limit of 2^32 − 1 slots (slot ids are u32; docs/FORMAT.md).
fn slots_after(n: u64, news: usize, free: usize) -> Option<u64> {
    let grown = n.checked_add(news.saturating_sub(free) as u64)?;
    (grown <= u64::from(u32::MAX)).then_some(grown)
}

/// The slot plan and the read access shared by the phases of one merge.
pub(super) struct Plan<'a> {
    pub(super) snap: &'a Snapshot,
    pub(super) st: &'a State,
    pub(super) frozen: &'a Frozen,
    pub(super) h: IndexHeader,
    pub(super) layout: NodeLayout,
    pub(super) d: usize,
    pub(super) m: usize,
    /// Slots before the merge.
    pub(super) n: u64,
    /// Slots after the merge.
    pub(super) n_new: u64,
    pub(super) del_set: HashSet<u32>,
    /// Slot of each new point (`frozen.news[i]` goes to `new_slot[i]`).
    pub(super) new_slot: Vec<u32>,
    /// Slot → index into `frozen.news`.
    pub(super) new_set: HashMap<u32, usize>,
    /// Label of a new point → its slot.
    pub(super) label_to_new: HashMap<u64, u32>,
    pub(super) path: PathBuf,
    /// `index.ssd`, opened for buffered reads.
    pub(super) file: std::fs::File,
    /// Blocks before the merge.
    pub(super) old_blocks: u64,
    /// Bytes of one neighbour code (M₂ + 4; 0 when the records hold none).
    pub(super) cb: usize,
    /// The new points' PQ codes (`frozen.news.len()` × M, in `frozen.news` order).
    pub(super) new_codes: Vec<u8>,
    /// The new points' neighbour codes (`frozen.news.len()` × `cb`; empty without them).
    pub(super) new_entries: Vec<u8>,
}

impl<'a> Plan<'a> {
    /// Plans the merge of `frozen` into `snap`.
    ///
    /// # Errors
    /// [`EngineError::Io`] opening `index.ssd`.
    pub(super) fn new(snap: &'a Snapshot, frozen: &'a Frozen) -> Result<Plan<'a>> {
        let st = &snap.state;
        let h = st.header.clone();
        let layout = h.layout;
        let n = h.n_slots;
        let free: Vec<u32> = frozen
            .deleted
            .iter()
            .copied()
            .chain((0..n as u32).filter(|&s| st.labels.is_free(s as usize)))
            .collect();
        let grown = slots_after(n, frozen.news.len(), free.len()).ok_or_else(|| {
            EngineError::Inconsistent {
                path: st.dir.clone(),
                detail: format!(
                    "merging {} new points into {n} slots ({} free) would pass the format's limit of 2^32 - 1 slots",
                    frozen.news.len(),
                    free.len()
                ),
            }
        })?;
        let mut new_slot: Vec<u32> = Vec::with_capacity(frozen.news.len());
        let mut next = n as u32;
        for i in 0..frozen.news.len() {
            if i < free.len() {
                new_slot.push(free[i]);
            } else {
                new_slot.push(next);
                next += 1;
            }
        }
        let new_set: HashMap<u32, usize> =
            new_slot.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        let label_to_new: HashMap<u64, u32> = frozen
            .news
            .iter()
            .zip(&new_slot)
            .map(|((l, _), &s)| (*l, s))
            .collect();
        let m = st.pq.m();
        let cb = layout.nbr_code_bytes();
        let mut new_codes = vec![0u8; frozen.news.len() * m];
        new_codes
            .par_chunks_mut(m.max(1))
            .zip(&frozen.news)
            .for_each_init(Vec::new, |scratch, (out, (_, v))| {
                st.pq.encode(v, out, scratch)
            });
        let mut new_entries = vec![0u8; frozen.news.len() * cb];
        if cb > 0 {
            new_entries
                .par_chunks_mut(cb)
                .zip(new_codes.par_chunks(m))
                .zip(&frozen.news)
                .for_each_init(
                    || (Vec::new(), Vec::new()),
                    |(scratch, x), ((out, code), (_, v))| {
                        // from the vector as the record stores it (the builder's rule)
                        x.clear();
                        x.extend(v.iter().map(|&c| {
                            if layout.f16_vectors {
                                half::f16::from_f32(c).to_f32()
                            } else {
                                c
                            }
                        }));
                        entry_of(st, h.metric, x, code, out, scratch)
                    },
                );
        }
        let path = st.dir.join(INDEX_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .open(&path)
            .map_err(|e| EngineError::io(&path, e))?;
        Ok(Plan {
            snap,
            st,
            frozen,
            d: st.dim(),
            m: st.pq.m(),
            n,
            n_new: {
                debug_assert_eq!(u64::from(next), grown);
                grown
            },
            del_set: frozen.deleted.iter().copied().collect(),
            new_slot,
            new_set,
            label_to_new,
            path,
            file,
            old_blocks: layout.blocks_for(n),
            cb,
            new_codes,
            new_entries,
            layout,
            h,
        })
    }

    /// The neighbour code (`cb` bytes) of pre-merge slot `slot` whose stored vector is `x`
    /// (d values), into `out`: its residual code under `pq_refine.bin` and the f32 term, as
    /// the builder encodes them (`ssdann_builder::refine`).
    pub(super) fn entry_from_vector(
        &self,
        slot: u32,
        x: &[f32],
        out: &mut [u8],
        scratch: &mut Vec<f32>,
    ) {
        let m = self.m;
        let code = &self.st.codes[slot as usize * m..(slot as usize + 1) * m];
        entry_of(self.st, self.h.metric, x, code, out, scratch);
    }

    /// The neighbour code of new point `i` (`frozen.news[i]`).
    pub(super) fn new_entry(&self, i: usize) -> &[u8] {
        &self.new_entries[i * self.cb..(i + 1) * self.cb]
    }

    /// Writes the record of node `id` at `off` in `block`: its vector bytes, `list`, and —
    /// when the records hold neighbour codes — the code of every listed slot: a new point's
    /// from the plan, any other's from `entry` (codes the merge read from records or encoded
    /// from a stored vector).
    ///
    /// # Errors
    /// [`EngineError::Inconsistent`] when `entry` has no code for a listed pre-merge slot
    /// (a merge that lost track of one: nothing is written to `index.ssd` then).
    pub(super) fn write_record<'e>(
        &self,
        block: &mut [u8],
        off: usize,
        id: u32,
        vector: &[u8],
        list: &[u32],
        entry: impl Fn(u32) -> Option<&'e [u8]>,
    ) -> Result<()> {
        self.layout.write_record(block, off, vector, list);
        let cb = self.cb;
        if cb == 0 {
            return Ok(());
        }
        let codes = self.layout.neighbor_codes_mut(block, off);
        codes.fill(0);
        for (k, &x) in list.iter().enumerate() {
            let e = match self.new_set.get(&x) {
                Some(&i) => self.new_entry(i),
                None => entry(x).ok_or_else(|| EngineError::Inconsistent {
                    path: self.path.clone(),
                    detail: format!(
                        "merge: no neighbour code for slot {x} in node {id}'s new list (a merge bug; nothing was written to index.ssd)"
                    ),
                })?,
            };
            codes[k * cb..(k + 1) * cb].copy_from_slice(e);
        }
        Ok(())
    }

    /// Reads block `b` as the merge has it so far: its latest journal image, else the
    /// pre-merge block (CRC checked), else zeros (a block past the old end).
    ///
    /// # Errors
    /// [`EngineError::Io`], or a checksum mismatch.
    pub(super) fn read_block(&self, journal: &Journal, b: u64, out: &mut [u8]) -> Result<()> {
        if journal.read(b, out)? {
            return Ok(());
        }
        if b < self.old_blocks {
            self.file
                .read_exact_at(out, self.layout.block_offset_bytes(b))
                .map_err(|e| EngineError::io(&self.path, e))?;
            self.st.check_block(out, b)?;
        } else {
            out.fill(0);
        }
        Ok(())
    }

    /// The record of pre-merge node `id` in `block` (its block, as read), checked: degree ≤ R,
    /// every neighbour < n and not itself — a CRC-valid block can still hold a list that
    /// would make the merge index out of range.
    ///
    /// # Errors
    /// [`EngineError::Inconsistent`] naming the sector and the node.
    pub(super) fn checked_record<'b>(
        &self,
        block: &'b [u8],
        id: u32,
    ) -> Result<ssdann_layout::sector::NodeRecord<'b>> {
        let id = u64::from(id);
        let rec = self.layout.record(block, self.layout.offset_in_block(id));
        rec.check(id, self.n, self.h.max_degree as usize)
            .map_err(|detail| EngineError::Inconsistent {
                path: self.path.clone(),
                detail: format!(
                    "sector {}: {detail}",
                    self.layout.block_sector(self.layout.block_of(id))
                ),
            })?;
        Ok(rec)
    }

    /// The PQ reconstruction of slot `slot` (d values) into `out`.
    pub(super) fn decode_into(&self, slot: u32, out: &mut [f32]) {
        let m = self.m;
        self.st.pq.decode(
            &self.st.codes[slot as usize * m..(slot as usize + 1) * m],
            out,
        );
    }

    /// [`Plan::decode_into`] into a vector resized to d.
    pub(super) fn decode(&self, slot: u32, out: &mut Vec<f32>) {
        out.resize(self.d, 0.0);
        self.decode_into(slot, out);
    }

    /// A RobustPrune worker with the index's metric, α and R.
    pub(super) fn pruner(&self) -> Pruner {
        Pruner {
            metric: self.h.metric,
            alpha: self.h.build_alpha.max(1.0),
            r: self.h.max_degree as usize,
            saturate: self.h.saturated,
            dim: self.d,
            local: Vec::new(),
            ids: Vec::new(),
            scratch: PruneScratch::default(),
            out: Vec::new(),
            repair: Default::default(),
        }
    }

    /// The label slot `s` has after the merge (`FREE_LABEL` for a free slot).
    pub(super) fn label_after(&self, s: usize) -> u64 {
        match self.new_set.get(&(s as u32)) {
            Some(&i) => self.frozen.news[i].0,
            None if s >= self.n as usize || self.del_set.contains(&(s as u32)) => FREE_LABEL,
            None => self.st.labels.get(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::slots_after;

    #[test]
    fn a_merge_never_grows_past_2_pow_32_minus_1_slots() {
        let max = u64::from(u32::MAX);
        assert_eq!(slots_after(100, 10, 3), Some(107));
        assert_eq!(slots_after(100, 2, 3), Some(100), "free slots first");
        assert_eq!(slots_after(max - 5, 5, 0), Some(max));
        assert_eq!(slots_after(max - 5, 6, 0), None);
        assert_eq!(slots_after(max, 1, 1), Some(max));
        assert_eq!(slots_after(u64::MAX, usize::MAX, 0), None);
    }
}
