//! The build's memory accounting: what the one-shot build and each stage of the
//! partitioned build hold in RAM, per point and in total, so that a budget can decide
//! between them and size the partitions. The figures are estimates of the structures the
//! build allocates (calibrated against measured peak RSS, docs/PERFORMANCE.md); the mapped
//! input is kept within [`PAGE_ALLOWANCE_FRACTION`] of the budget by dropping its pages.

use super::rows::GraphType;

/// Fraction of the budget the mapped input's pages may occupy before they are dropped.
pub const PAGE_ALLOWANCE_FRACTION: f64 = 0.10;
/// Fraction of the budget a partition's graph build may plan to use (the rest is allocator
/// slack, thread stacks, I/O buffers and the mapped pages).
pub const PARTITION_FRACTION: f64 = 0.70;
/// Fixed bytes outside the estimate: the program, thread stacks, buffers.
pub const FIXED_BYTES: u64 = 64 << 20;

/// The shape of a build, as the budget sees it.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Points n.
    pub n: usize,
    /// Dimension d.
    pub dim: usize,
    /// Bytes per input element.
    pub elem_bytes: usize,
    /// Dimension of the graph rows (d, or d + 1 for inner product).
    pub graph_dim: usize,
    /// Bytes per graph-row element.
    pub graph_elem_bytes: usize,
    /// Degree R.
    pub max_degree: usize,
    /// PQ bytes M.
    pub pq_m: usize,
    /// Build threads.
    pub threads: usize,
}

impl Shape {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        n: usize,
        dim: usize,
        elem_bytes: usize,
        graph_dim: usize,
        graph: GraphType,
        max_degree: usize,
        pq_m: usize,
        threads: usize,
    ) -> Shape {
        Shape {
            n,
            dim,
            elem_bytes,
            graph_dim,
            graph_elem_bytes: graph.bytes(),
            max_degree,
            pq_m,
            threads,
        }
    }

    /// RAM per point of a Vamana build over `p` points, excluding fixed costs: the graph
    /// rows, the adjacency lists (one 64-byte node — lock, list header, published address —
    /// plus a heap block grown up to 1.3 R and rounded up by the allocator: ≈ 8 R + 16
    /// bytes), the id map and one visited bit per thread.
    pub fn vamana_bytes_per_point(&self) -> u64 {
        (self.graph_dim * self.graph_elem_bytes
            + 8 * self.max_degree
            + 80
            + 4
            + self.threads.div_ceil(8)) as u64
    }

    /// Estimated peak RAM of the one-shot build: the input mapped in full (it is read
    /// throughout), a graph copy when the graph is not built on the input itself, the
    /// Vamana structures, the PQ codes twice (input and slot order) and the labels.
    pub fn one_shot_bytes(&self) -> u64 {
        let n = self.n as u64;
        let input = n * (self.dim * self.elem_bytes) as u64;
        let copy = if self.graph_dim == self.dim && self.graph_elem_bytes == self.elem_bytes {
            0
        } else {
            n * (self.graph_dim * self.graph_elem_bytes) as u64
        };
        let graph =
            n * (self.vamana_bytes_per_point() - (self.graph_dim * self.graph_elem_bytes) as u64);
        input + copy + graph + n * (2 * self.pq_m as u64 + 8) + FIXED_BYTES
    }

    /// Most points one partition may hold under `budget` bytes.
    pub fn partition_cap(&self, budget: u64) -> usize {
        let usable = (budget.saturating_sub(FIXED_BYTES) as f64 * PARTITION_FRACTION) as u64;
        (usable / self.vamana_bytes_per_point()) as usize
    }

    /// Points PQ may be trained on under `budget`: the gathered f32 sample and one
    /// subspace copy per thread must take at most half the budget.
    pub fn pq_sample(&self, budget: u64, max: usize) -> usize {
        let per = (self.dim * 4 + self.dim * 4 * self.threads / self.pq_m.max(1) + 8) as u64;
        let half = budget.saturating_sub(FIXED_BYTES) / 2;
        ((half / per) as usize).min(max).min(self.n)
    }
}

/// Smallest partition the partitioned build accepts: a graph of fewer points than this is
/// not worth building (and the budget is then too small to be a budget for this data).
pub fn min_partition(max_degree: usize) -> usize {
    (4 * max_degree).max(256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cap_fits_the_budget_and_one_shot_counts_every_structure() {
        let s = Shape::new(1_000_000, 128, 4, 128, GraphType::F16, 64, 32, 2);
        // 128-d f16 graph rows + lists + ids + stamps
        assert_eq!(s.vamana_bytes_per_point(), 256 + 512 + 80 + 4 + 1);
        let budget = 1u64 << 30;
        let cap = s.partition_cap(budget) as u64;
        assert!(cap * s.vamana_bytes_per_point() <= budget - FIXED_BYTES);
        assert!(cap > 700_000 && cap < 900_000, "{cap}");
        // one-shot: 512 MB input + 256 MB copy + lists… > 1 GiB
        assert!(s.one_shot_bytes() > budget);
        assert!(s.pq_sample(budget, 256 * 1024) <= 256 * 1024);
    }
}
