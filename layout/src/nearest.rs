//! Nearest-centroid assignment: the inner loop of k-means (PQ training, the partitioned
//! build's partitions) and of PQ encoding.
//!
//! For a point x and centroids c₀ … c_{k−1}, `argmin_c ||x − c||² = argmin_c (½||c||² − x·c)`
//! (||x||² is the same for every c). With the half norms computed once per codebook, each
//! (point, centroid) pair costs one fused multiply-add per coordinate instead of a subtract
//! and a multiply-add, and the running minimum is kept in registers, so no distance array
//! is written and scanned again (the two-pass `l2_to_all` + `argmin`). The AVX2 kernel also
//! scores four points against each loaded block of centroids, so a centroid is loaded once
//! per four points (the register blocking of a small GEMM, as DiskANN's
//! `compute_closest_centers` gets from BLAS).
//!
//! Precision: the scores are differences of f32 sums, so two centroids whose squared
//! distances differ by less than about 1e-7 × (||x||² + ||c||²) may be ordered either way;
//! k-means and PQ callers feed centred data (the PQ residual, a subspace of it), where this
//! is far below the gaps between centroids.

use crate::pq::has_avx2;

/// `½·||c||²` of each of the k centroids stored transposed in `ct` (`w × k`,
/// `ct[j·k + c]` = coordinate j of centroid c), into `out` (length k).
///
/// # Panics
/// If `ct.len() != w × out.len()`.
pub fn half_norms(ct: &[f32], w: usize, out: &mut [f32]) {
    let k = out.len();
    assert_eq!(ct.len(), w * k, "half_norms: shape mismatch");
    out.fill(0.0);
    for j in 0..w {
        for (o, &v) in out.iter_mut().zip(&ct[j * k..(j + 1) * k]) {
            *o += v * v;
        }
    }
    out.iter_mut().for_each(|o| *o *= 0.5);
}

/// For each of the b points in `points` (`b × w` row-major f32), the index of its nearest
/// centroid in squared L2 among the k centroids stored transposed in `ct` (`w × k`), written
/// to `out` (length b). `hn` holds the centroids' [`half_norms`] (length k). Ties go to the
/// lowest index. AVX2/FMA when present (any k: a last block of fewer than eight centroids is
/// loaded with a mask), scalar otherwise.
///
/// # Panics
/// If the shapes disagree (`points.len() != b × w`, `ct.len() != w × k`), k = 0 or k > 2³².
pub fn nearest_centroids(points: &[f32], w: usize, ct: &[f32], hn: &[f32], out: &mut [u32]) {
    let (b, k) = (out.len(), hn.len());
    assert!(
        k > 0 && k <= u32::MAX as usize,
        "nearest_centroids: k = {k}"
    );
    assert_eq!(
        points.len(),
        b * w,
        "nearest_centroids: points are not b × w"
    );
    assert_eq!(
        ct.len(),
        w * k,
        "nearest_centroids: centroids are not w × k"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        let mut i = 0;
        while i + 4 <= b {
            // SAFETY: AVX2 and FMA were detected at run time; the kernel reads rows i..i+4
            // of `points` (each w long), ct (w × k) and hn (k), whose shapes were checked.
            unsafe { nearest4_avx2(&points[i * w..(i + 4) * w], w, ct, hn, &mut out[i..i + 4]) };
            i += 4;
        }
        if i < b {
            // The last 1–3 points: pad to four with copies of the last one.
            let mut pad = vec![0f32; 4 * w];
            let rest = &points[i * w..];
            pad[..rest.len()].copy_from_slice(rest);
            for p in (b - i)..4 {
                pad.copy_within((b - i - 1) * w..(b - i) * w, p * w);
            }
            let mut o = [0u32; 4];
            // SAFETY: as above; `pad` is 4 × w.
            unsafe { nearest4_avx2(&pad, w, ct, hn, &mut o) };
            out[i..].copy_from_slice(&o[..b - i]);
        }
        return;
    }
    for (x, o) in points.chunks_exact(w.max(1)).zip(out.iter_mut()) {
        *o = nearest_scalar(x, ct, hn);
    }
    if w == 0 {
        out.fill(0); // every centroid is at distance 0: the lowest index
    }
}

/// The scalar reference: the same score and tie rule as the AVX2 kernel.
fn nearest_scalar(x: &[f32], ct: &[f32], hn: &[f32]) -> u32 {
    let k = hn.len();
    let mut best = (f32::INFINITY, 0u32);
    for (c, &h) in hn.iter().enumerate() {
        let mut s = h;
        for (j, &xj) in x.iter().enumerate() {
            s -= xj * ct[j * k + c];
        }
        if s < best.0 {
            best = (s, c as u32);
        }
    }
    best.1
}

/// Four points against all k centroids, eight centroids per step: the scores of the four
/// points stay in four registers, each loaded centroid coordinate serves all four, and a
/// per-lane running minimum with its index replaces the distance array.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nearest4_avx2(points: &[f32], w: usize, ct: &[f32], hn: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    let k = hn.len();
    let (x, c, h) = (points.as_ptr(), ct.as_ptr(), hn.as_ptr());
    let mut best = [_mm256_set1_ps(f32::INFINITY); 4];
    let mut best_idx = [_mm256_setzero_si256(); 4];
    let mut idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let eight = _mm256_set1_epi32(8);
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut c0 = 0;
    while c0 < k {
        // A last block of fewer than eight centroids loads only its lanes (a masked load
        // never touches the others) and gives the missing lanes a score of +∞.
        let tail =
            (k - c0 < 8).then(|| _mm256_cmpgt_epi32(_mm256_set1_epi32((k - c0) as i32), lanes));
        let load = |p: *const f32| match tail {
            Some(mask) => _mm256_maskload_ps(p, mask),
            None => _mm256_loadu_ps(p),
        };
        let hv = match tail {
            Some(mask) => _mm256_blendv_ps(
                _mm256_set1_ps(f32::INFINITY),
                load(h.add(c0)),
                _mm256_castsi256_ps(mask),
            ),
            None => load(h.add(c0)),
        };
        let mut acc = [hv; 4];
        for j in 0..w {
            let cv = load(c.add(j * k + c0));
            for (p, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fnmadd_ps(_mm256_set1_ps(*x.add(p * w + j)), cv, *a);
            }
        }
        for p in 0..4 {
            // Strictly less: an equal score later keeps the earlier (lower) index.
            let lt = _mm256_cmp_ps(acc[p], best[p], _CMP_LT_OQ);
            best[p] = _mm256_blendv_ps(best[p], acc[p], lt);
            best_idx[p] = _mm256_blendv_epi8(best_idx[p], idx, _mm256_castps_si256(lt));
        }
        idx = _mm256_add_epi32(idx, eight);
        c0 += 8;
    }
    for p in 0..4 {
        out[p] = reduce_min_index(best[p], best_idx[p]);
    }
}

/// The index of the smallest of eight (score, index) lanes, the lowest index among equal
/// scores: branch-free (a data-dependent branch per lane mispredicts often here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn reduce_min_index(v: std::arch::x86_64::__m256, i: std::arch::x86_64::__m256i) -> u32 {
    use std::arch::x86_64::*;
    // The minimum score, broadcast to every lane.
    let mut m = _mm256_min_ps(v, _mm256_permute2f128_ps(v, v, 1));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0b01_00_11_10));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0b10_11_00_01));
    // Lanes holding it keep their index, the others u32::MAX; then the unsigned minimum.
    // (A lane is never NaN: it is only replaced by a strictly smaller score.)
    let at_min = _mm256_castps_si256(_mm256_cmp_ps(v, m, _CMP_EQ_OQ));
    let mut j = _mm256_blendv_epi8(_mm256_set1_epi32(-1), i, at_min);
    j = _mm256_min_epu32(j, _mm256_permute2x128_si256(j, j, 1));
    j = _mm256_min_epu32(j, _mm256_shuffle_epi32(j, 0b01_00_11_10));
    j = _mm256_min_epu32(j, _mm256_shuffle_epi32(j, 0b10_11_00_01));
    _mm256_cvtsi256_si32(j) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(x: &[f32], ct: &[f32], k: usize) -> u32 {
        let w = x.len();
        let mut best = (f64::INFINITY, 0u32);
        for c in 0..k {
            let d: f64 = (0..w)
                .map(|j| f64::from(x[j] - ct[j * k + c]).powi(2))
                .sum();
            if d < best.0 {
                best = (d, c as u32);
            }
        }
        best.1
    }

    /// Deterministic pseudo-random values in [−1, 1) (no rand dependency in layout).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_for_every_width_and_tail() {
        for &(w, k) in &[
            (1usize, 256usize),
            (3, 256),
            (4, 256),
            (8, 64),
            (12, 256),
            (5, 24),
            (2, 7),
            (16, 44),
            (3, 13),
            (1, 1),
        ] {
            for b in [1usize, 3, 4, 5, 11] {
                let ct = values(w * k, (w * 31 + k) as u64);
                let pts = values(b * w, (b * 7 + w) as u64 + 1000);
                let mut hn = vec![0f32; k];
                half_norms(&ct, w, &mut hn);
                let mut out = vec![u32::MAX; b];
                nearest_centroids(&pts, w, &ct, &hn, &mut out);
                let scalar: Vec<u32> = pts
                    .chunks_exact(w)
                    .map(|x| nearest_scalar(x, &ct, &hn))
                    .collect();
                for (i, x) in pts.chunks_exact(w).enumerate() {
                    assert_eq!(out[i], brute(x, &ct, k), "w {w} k {k} b {b} point {i}");
                    assert_eq!(scalar[i], out[i], "scalar path w {w} k {k} point {i}");
                }
            }
        }
    }

    #[test]
    fn ties_go_to_the_lowest_index() {
        // Centroids 3, 11 and 200 are the same point; the query sits on it.
        let (w, k) = (4usize, 256usize);
        let mut ct = values(w * k, 9);
        for j in 0..w {
            for c in [3usize, 11, 200] {
                ct[j * k + c] = 0.25 * j as f32;
            }
        }
        let x: Vec<f32> = (0..w).map(|j| 0.25 * j as f32).collect();
        let mut hn = vec![0f32; k];
        half_norms(&ct, w, &mut hn);
        let pts: Vec<f32> = x.iter().cycle().take(5 * w).copied().collect();
        let mut out = vec![0u32; 5];
        nearest_centroids(&pts, w, &ct, &hn, &mut out);
        assert_eq!(out, vec![3; 5]);
        assert_eq!(nearest_scalar(&x, &ct, &hn), 3);
    }
}
