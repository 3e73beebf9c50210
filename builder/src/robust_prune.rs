//! RobustPrune (DiskANN, NeurIPS 2019, Algorithm 2): choose at most R out-neighbours for p
//! from a candidate pool, closest first, dropping every candidate p' that the chosen p*
//! "covers": `α · d(p*, p') ≤ d(p, p')`. α > 1 keeps longer edges (fewer hops on disk).

use ssdann_layout::{Metric, Vector};

/// Largest candidate pool considered (DiskANN's `maxc`): the closest ones are kept.
pub const DEFAULT_MAX_CANDIDATES: usize = 750;

/// Reusable buffers for [`robust_prune`].
#[derive(Clone, Debug, Default)]
pub struct PruneScratch {
    /// Candidate pool: (distance to p, id).
    pub pool: Vec<(f32, u32)>,
    occluded: Vec<bool>,
}

/// RobustPrune(p, V, α, R) over `scratch.pool` (distances to p must be filled in). The pool
/// is sorted, de-duplicated, cleared of p itself, and truncated to `max_candidates`; the
/// chosen neighbours (≤ `r`, closest first) are written to `out`.
///
/// `data` is n × d row-major; distances are squared L2 (L2, cosine) or negated inner
/// product (IP).
#[allow(clippy::too_many_arguments)]
pub fn robust_prune<T: Vector>(
    data: &[T],
    dim: usize,
    metric: Metric,
    p: u32,
    alpha: f32,
    r: usize,
    max_candidates: usize,
    scratch: &mut PruneScratch,
    out: &mut Vec<u32>,
) {
    out.clear();
    let pool = &mut scratch.pool;
    pool.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    pool.dedup_by_key(|c| c.1);
    pool.retain(|c| c.1 != p);
    pool.truncate(max_candidates);
    let occluded = &mut scratch.occluded;
    occluded.clear();
    occluded.resize(pool.len(), false);
    let vec_of = |id: u32| &data[id as usize * dim..(id as usize + 1) * dim];
    for i in 0..pool.len() {
        if occluded[i] {
            continue;
        }
        let (_, star) = pool[i];
        out.push(star);
        if out.len() >= r {
            break;
        }
        let vs = vec_of(star);
        for j in i + 1..pool.len() {
            if occluded[j] {
                continue;
            }
            let (dj, idj) = pool[j];
            let d_star = T::distance(metric, vs, vec_of(idj));
            if alpha * d_star <= dj {
                occluded[j] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prunes_covered_points_and_respects_r() {
        // p = 0 at x=0; candidates at 1, 2, 3 on the same side: 1 covers 2 and 3 when α = 1.
        let data = vec![0.0f32, 1.0, 2.0, 3.0, -1.0];
        let mut s = PruneScratch::default();
        let mut out = Vec::new();
        let fill = |s: &mut PruneScratch| {
            s.pool.clear();
            for id in [3u32, 1, 2, 4, 1, 0] {
                s.pool.push(((data[id as usize] - 0.0f32).powi(2), id));
            }
        };
        fill(&mut s);
        robust_prune(&data, 1, Metric::L2, 0, 1.0, 8, 750, &mut s, &mut out);
        assert_eq!(out, vec![1, 4]);
        // a huge α keeps everything (nothing is covered), R caps it
        fill(&mut s);
        robust_prune(&data, 1, Metric::L2, 0, 100.0, 3, 750, &mut s, &mut out);
        assert_eq!(out, vec![1, 4, 2]);
    }
}
