//! Exact k-nearest neighbours by brute force (parallel, SIMD kernels), for `ssdann gt`,
//! recall measurement and tests. Ties are broken by lower id, as in big-ann-benchmarks.

use rayon::prelude::*;
use ssdann_layout::{Element, Metric};

/// Merges the exact top-k of each query over one block of base vectors into `best`
/// (per query a list of (distance, id) kept sorted, length ≤ k). `base` is a row-major
/// block of `base.len() / d` vectors whose first id is `first_id`; `queries` is nq × d.
pub fn update_topk<T: Element>(
    queries: &[T],
    base: &[T],
    dim: usize,
    metric: Metric,
    first_id: u32,
    k: usize,
    best: &mut [Vec<(f32, u32)>],
) {
    best.par_iter_mut()
        .zip(queries.par_chunks(dim))
        .for_each(|(list, q)| {
            for (j, x) in base.chunks_exact(dim).enumerate() {
                let d = T::distance(metric, q, x);
                let id = first_id + j as u32;
                if list.len() < k || (d, id) < list[list.len() - 1] {
                    let pos = list.partition_point(|e| *e < (d, id));
                    list.insert(pos, (d, id));
                    list.truncate(k);
                }
            }
        });
}

/// Exact top-k of every query (`queries` nq × d) over `base` (n × d): per query, k
/// (distance, id) pairs, closest first. Distances are squared L2 or negated inner product.
pub fn exact_knn<T: Element>(
    queries: &[T],
    base: &[T],
    dim: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<(f32, u32)>> {
    let nq = queries.len() / dim;
    let mut best = vec![Vec::with_capacity(k + 1); nq];
    update_topk(queries, base, dim, metric, 0, k, &mut best);
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn exact_on_a_line_with_ties_by_id() {
        let base = [0.0f32, 1.0, 2.0, 3.0, 1.0];
        let gt = super::exact_knn(&[1.1f32], &base, 1, ssdann_layout::Metric::L2, 3);
        let ids: Vec<u32> = gt[0].iter().map(|e| e.1).collect();
        assert_eq!(ids, vec![1, 4, 2]);
    }
}
