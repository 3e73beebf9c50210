//! RobustPrune workers for the merge phases: candidates (slot, vector) gathered into a
//! local matrix, then the builder's RobustPrune (DiskANN Alg. 2) or its repair variant
//! (FreshDiskANN §4, delete phase); and the conversions between stored vector bytes and f32.

use ssdann_builder::robust_prune::{
    robust_prune, robust_prune_repair, saturate, PruneScratch, RepairScratch,
    DEFAULT_MAX_CANDIDATES,
};
use ssdann_layout::{ElementType, Metric, NodeLayout};

/// Vector bytes of a new record as `layout` stores them: the element type, or f16 (format 2).
pub(super) fn record_vector(layout: &NodeLayout, v: &[f32]) -> Vec<u8> {
    if layout.f16_vectors {
        return v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
    }
    match layout.element {
        ElementType::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ElementType::U8 => v.iter().map(|&x| x as u8).collect(),
        ElementType::I8 => v.iter().map(|&x| x as i8 as u8).collect(),
    }
}

/// A record's stored vector bytes (as `layout` stores them) as f32 into `out`.
pub(super) fn vector_f32(layout: &NodeLayout, bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    if layout.f16_vectors {
        out.extend(ssdann_layout::distance::scalar::f16_le_values(bytes));
        return;
    }
    match layout.element {
        ElementType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        ElementType::U8 => out.extend(bytes.iter().map(|&x| f32::from(x))),
        ElementType::I8 => out.extend(bytes.iter().map(|&x| f32::from(x as i8))),
    }
}

/// RobustPrune of node `p` (vector `pv`) over candidates (slot, vector) in a local matrix.
pub(super) struct Pruner {
    pub(super) metric: Metric,
    pub(super) alpha: f32,
    pub(super) r: usize,
    /// Saturate each pruned list to R (the index's header says its graph is saturated).
    pub(super) saturate: bool,
    pub(super) dim: usize,
    pub(super) local: Vec<f32>,
    pub(super) ids: Vec<u32>,
    pub(super) scratch: PruneScratch,
    pub(super) out: Vec<u32>,
    pub(super) repair: RepairScratch,
}

impl Pruner {
    pub(super) fn start(&mut self, pv: &[f32]) {
        self.local.clear();
        self.local.extend_from_slice(pv);
        self.ids.clear();
    }
    pub(super) fn add(&mut self, slot: u32, v: &[f32]) {
        if !self.ids.contains(&slot) {
            self.ids.push(slot);
            self.local.extend_from_slice(v);
        }
    }
    pub(super) fn run(&mut self) -> Vec<u32> {
        let d = self.dim;
        // IP graphs are navigated by the MIPS-to-L2 reduction at build time; here the
        // candidates are ranked in L2 for every metric (a true metric for the α rule).
        let metric = if self.metric == Metric::InnerProduct {
            Metric::L2
        } else {
            self.metric
        };
        self.scratch.pool.clear();
        for i in 0..self.ids.len() {
            let dist = <f32 as ssdann_layout::Vector>::distance(
                metric,
                &self.local[..d],
                &self.local[(i + 1) * d..(i + 2) * d],
            );
            self.scratch.pool.push((dist, i as u32 + 1));
        }
        robust_prune(
            &self.local,
            d,
            metric,
            0,
            self.alpha,
            self.r,
            DEFAULT_MAX_CANDIDATES,
            &mut self.scratch,
            &mut self.out,
        );
        if self.saturate && self.alpha > 1.0 {
            saturate(&self.scratch, self.r, &mut self.out);
        }
        self.out.iter().map(|&i| self.ids[i as usize - 1]).collect()
    }

    /// Delete-phase repair of a node (vector `own`): see [`robust_prune_repair`].
    pub(super) fn repair(
        &mut self,
        own: &[f32],
        kept: &[u32],
        replacements: &[u32],
        decode: &dyn Fn(u32, &mut [f32]),
    ) -> Vec<u32> {
        robust_prune_repair(
            own,
            kept,
            replacements,
            self.alpha,
            self.r,
            decode,
            &mut self.repair,
        )
    }
}
