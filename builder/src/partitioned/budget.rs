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
/// Fixed bytes outside the estimate: the program, thread stacks and allocator slack
/// ([`PROGRAM_BYTES`]) and the bounded buffers each stage may hold beyond its budget-sized
/// structures ([`STAGE_BUFFER_BYTES`]).
pub const FIXED_BYTES: u64 = 64 << 20;
/// The program's own RSS: code, thread stacks, allocator slack (≈ 10–18 MiB measured on a
/// 2-thread build, docs/PERFORMANCE.md; the rest is margin).
pub const PROGRAM_BYTES: u64 = 32 << 20;
/// Buffers a stage may hold whatever the budget: the partition k-means sample, the merge's
/// read buffers and row chunk, the assignment's id spools. A stage's working set is at most
/// this plus [`PARTITION_FRACTION`] of what the budget gives beyond [`FIXED_BYTES`]
/// ([`stage_bytes`]).
pub const STAGE_BUFFER_BYTES: u64 = 24 << 20;
const _: () = assert!(PROGRAM_BYTES + STAGE_BUFFER_BYTES <= FIXED_BYTES);

/// Rows the partition k-means needs at least (all of them when fewer).
pub const MIN_PARTITION_SAMPLE: usize = 10_000;
/// Rows of the merge's smallest chunk.
pub const MIN_MERGE_CHUNK: usize = 1024;
/// Rows of the merge's largest chunk.
pub const MAX_MERGE_CHUNK: usize = 1 << 15;

/// Working bytes a stage (partitioning, one partition graph's neighbours, the merge) may
/// plan under `budget`: [`STAGE_BUFFER_BYTES`] plus [`PARTITION_FRACTION`] of the budget
/// beyond [`FIXED_BYTES`]. With the program ([`PROGRAM_BYTES`]) and the mapped pages
/// ([`PAGE_ALLOWANCE_FRACTION`]) this stays within any budget ≥ [`FIXED_BYTES`].
pub fn stage_bytes(budget: u64) -> u64 {
    STAGE_BUFFER_BYTES + (budget.saturating_sub(FIXED_BYTES) as f64 * PARTITION_FRACTION) as u64
}

/// How the merge reads and pages its rows (see [`Shape::merge_plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergePlan {
    /// Rows merged per chunk.
    pub chunk_rows: usize,
    /// Records (and ids) each partition stream reads per refill.
    pub records_per_read: usize,
}

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

    /// Bytes of one partition graph record (degree + R ids) and its id.
    fn stream_record_bytes(&self) -> u64 {
        4 * (1 + self.max_degree as u64) + 4
    }

    /// Bytes per row of a merge chunk: its list (a `Vec` header, up to 2R ids, the
    /// allocator's header) and its output record.
    pub fn merge_row_bytes(&self) -> u64 {
        24 + 16 + 8 * self.max_degree as u64 + 4 * (1 + self.max_degree as u64)
    }

    /// The merge of `parts` partition graphs under `budget`: a quarter of
    /// [`stage_bytes`] for the partition streams' read buffers (at most 1 MiB each), the
    /// rest for the row chunk. `None` when one record per stream and a chunk of
    /// [`MIN_MERGE_CHUNK`] rows do not fit.
    pub fn merge_plan(&self, budget: u64, parts: usize) -> Option<MergePlan> {
        let total = stage_bytes(budget);
        let rec = self.stream_record_bytes();
        let parts = parts.max(1) as u64;
        let streams = total / 4;
        let records_per_read = (streams / parts / rec).min((1 << 20) / rec).max(1);
        let left = total.checked_sub(parts * records_per_read * rec)?;
        let chunk_rows = ((left / self.merge_row_bytes()) as usize).min(MAX_MERGE_CHUNK);
        (chunk_rows >= MIN_MERGE_CHUNK.min(self.n.max(1))).then_some(MergePlan {
            chunk_rows: chunk_rows.max(1),
            records_per_read: records_per_read as usize,
        })
    }

    /// Partitions the merge is planned for when each holds at most `cap` points: twice
    /// the k-means' first choice (it grows C until the largest partition fits).
    pub fn planned_parts(&self, cap: usize) -> usize {
        2 * (super::shard::OVERLAP * self.n).div_ceil(cap.max(1))
    }

    /// Bytes per row of the partition k-means sample: the f32 graph row, its id and its
    /// k-means assignment.
    pub fn partition_sample_row_bytes(&self) -> u64 {
        (self.graph_dim * 4 + 8 + 4) as u64
    }

    /// Rows of the partition k-means sample under `budget`: at most `max`, and as many as
    /// [`stage_bytes`] holds beside the k-means seeding sample (at most
    /// [`crate::kmeans::SEEDING_SAMPLE`] rows).
    pub fn partition_sample(&self, budget: u64, max: usize) -> usize {
        let seeding = (crate::kmeans::SEEDING_SAMPLE.min(self.n) * self.graph_dim * 4) as u64;
        let room = stage_bytes(budget).saturating_sub(seeding);
        ((room / self.partition_sample_row_bytes()) as usize)
            .min(max)
            .min(self.n)
    }

    /// Whether every stage fits `budget` with partitions of at most `min_points` points
    /// (the smallest the build accepts): the partition k-means sample (at least
    /// [`MIN_PARTITION_SAMPLE`] rows), the partition graph, the merge of the partitions
    /// that cap gives.
    pub fn fits(&self, budget: u64, min_points: usize) -> bool {
        let cap = self.partition_cap(budget);
        cap >= min_points
            && self.partition_sample(budget, usize::MAX) >= self.n.min(MIN_PARTITION_SAMPLE)
            && self.merge_plan(budget, self.planned_parts(cap)).is_some()
    }

    /// The smallest budget every stage fits ([`Shape::fits`]), in bytes.
    pub fn minimum_budget(&self, min_points: usize) -> u64 {
        let (mut lo, mut hi) = (FIXED_BYTES, FIXED_BYTES.max(1 << 20));
        while !self.fits(hi, min_points) {
            lo = hi;
            hi = hi.saturating_mul(2);
            if hi == u64::MAX {
                return hi;
            }
        }
        // lo does not fit (or is FIXED_BYTES), hi fits: bisect to the first that fits.
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if self.fits(mid, min_points) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        if self.fits(lo, min_points) {
            lo
        } else {
            hi
        }
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
