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

/// Graph saturation (DiskANN's `saturate_graph`): after [`robust_prune`] over `scratch`
/// wrote `out`, fills `out` up to `r` with the pool candidates that the α rule covered,
/// closest first. On disk a record has room for R neighbours whatever its degree, so the
/// extra edges cost no reads, only their ADC when the node is expanded; they give each read
/// more candidates (measured in docs/PERFORMANCE.md). Leaves a full `out` as it is.
pub fn saturate(scratch: &PruneScratch, r: usize, out: &mut Vec<u32>) {
    if out.len() >= r {
        return;
    }
    for (i, &(_, id)) in scratch.pool.iter().enumerate() {
        if out.len() >= r {
            break;
        }
        // the covered ones; every uncovered candidate is in `out` already (the prune loop
        // ran to the end, or `out` would be full)
        if scratch.occluded.get(i) == Some(&true) {
            out.push(id);
        }
    }
}

/// Reusable buffers for [`robust_prune_repair`].
#[derive(Clone, Debug, Default)]
pub struct RepairScratch {
    ids: Vec<u32>,
    local: Vec<f32>,
    ready: Vec<bool>,
}

/// RobustPrune's repair variant, for a node p (vector `own`, d = `own.len()`) that lost
/// out-neighbours to deletes (FreshDiskANN, Singh et al. 2021, §4, delete phase): its
/// surviving neighbours `kept` stay; the freed places (up to `r` in all) are filled, closest
/// first, with `replacements` that no kept or already added neighbour covers under the α
/// rule (Algorithm 2's test, `α · d(o, c) ≤ d(p, c)`, applied against the surviving list
/// instead of from scratch, so the build's good edges are not re-decided on approximate
/// distances). Distances are squared L2 (the graph's navigation metric; IP graphs use the
/// MIPS-to-L2 reduction). `decode(id, out)` writes a point's d-value vector (e.g. its PQ
/// reconstruction); kept neighbours are decoded only when the α test reaches them, and each
/// test abandons a distance as soon as it exceeds the bound that decides it.
///
/// Returns the new list: `kept` in order, then the chosen replacements.
pub fn robust_prune_repair(
    own: &[f32],
    kept: &[u32],
    replacements: &[u32],
    alpha: f32,
    r: usize,
    decode: &dyn Fn(u32, &mut [f32]),
    scratch: &mut RepairScratch,
) -> Vec<u32> {
    use ssdann_layout::distance::{l2_sq_f32, l2_sq_f32_bounded};
    let d = own.len();
    let RepairScratch { ids, local, ready } = scratch;
    ids.clear();
    ids.extend_from_slice(kept);
    for &c in replacements {
        if !ids.contains(&c) {
            ids.push(c);
        }
    }
    let rows = 1 + ids.len();
    local.resize(rows * d, 0.0);
    local[..d].copy_from_slice(own);
    ready.clear();
    ready.resize(rows, false);
    let nk = kept.len();
    let mut cands: Vec<(f32, usize)> = Vec::with_capacity(rows - 1 - nk);
    for i in nk + 1..rows {
        decode(ids[i - 1], &mut local[i * d..(i + 1) * d]);
        ready[i] = true;
        cands.push((l2_sq_f32(&local[..d], &local[i * d..(i + 1) * d]), i));
    }
    cands.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<usize> = (1..=nk).collect();
    for (dc, c) in cands {
        if out.len() >= r {
            break;
        }
        // c is covered by o when α · d(o, c) ≤ d(p, c)
        let bound = dc / alpha;
        let mut covered = false;
        for &o in &out {
            if !ready[o] {
                decode(ids[o - 1], &mut local[o * d..(o + 1) * d]);
                ready[o] = true;
            }
            if l2_sq_f32_bounded(
                &local[o * d..(o + 1) * d],
                &local[c * d..(c + 1) * d],
                bound,
            ) <= bound
            {
                covered = true;
                break;
            }
        }
        if !covered {
            out.push(c);
        }
    }
    out.iter().map(|&i| ids[i - 1]).collect()
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

    #[test]
    fn saturation_adds_the_covered_candidates_closest_first_up_to_r() {
        let data = [0.0f32, 1.0, 2.0, 3.0, -1.0, -3.0];
        let mut s = PruneScratch::default();
        let mut out = Vec::new();
        let fill = |s: &mut PruneScratch| {
            s.pool.clear();
            for id in [3u32, 1, 2, 4, 5] {
                s.pool.push(((data[id as usize] - 0.0f32).powi(2), id));
            }
        };
        // α = 1 keeps 1 and 4 (each covers the points beyond it on its side); saturation
        // adds the covered ones by distance: 2 (4), 3 and 5 (both 9, by id) up to R
        fill(&mut s);
        robust_prune(&data, 1, Metric::L2, 0, 1.0, 8, 750, &mut s, &mut out);
        assert_eq!(out, vec![1, 4]);
        saturate(&s, 4, &mut out);
        assert_eq!(out, vec![1, 4, 2, 3]);
        fill(&mut s);
        robust_prune(&data, 1, Metric::L2, 0, 1.0, 8, 750, &mut s, &mut out);
        saturate(&s, 8, &mut out);
        assert_eq!(out, vec![1, 4, 2, 3, 5], "every candidate once, none twice");
        // a list already at R is left as it is
        fill(&mut s);
        robust_prune(&data, 1, Metric::L2, 0, 1.0, 2, 750, &mut s, &mut out);
        saturate(&s, 2, &mut out);
        assert_eq!(out, vec![1, 4]);
    }

    #[test]
    fn repair_keeps_survivors_and_adds_only_uncovered_replacements() {
        // p at 0; kept neighbour 1 at x = 1; replacements 2 (x = 2, covered by 1 at α = 1),
        // 3 (x = -1, not covered), 4 (x = -0.5: closer than 3, so 4 covers 3).
        let pts = [0.0f32, 1.0, 2.0, -1.0, -0.5];
        let decode = |id: u32, out: &mut [f32]| out[0] = pts[id as usize];
        let mut s = RepairScratch::default();
        let got = robust_prune_repair(&[0.0], &[1], &[2, 3, 4], 1.0, 8, &decode, &mut s);
        assert_eq!(got, vec![1, 4]);
        // R caps the list; the survivors always stay
        let got = robust_prune_repair(&[0.0], &[1, 2], &[3], 1.0, 2, &decode, &mut s);
        assert_eq!(got, vec![1, 2]);
    }
}
