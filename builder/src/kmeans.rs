//! k-means for PQ training: k-means++ seeding (Arthur & Vassilvitskii, 2007) on a subsample,
//! then Lloyd iterations over all given points, with a fixed iteration cap.

use rand::Rng;
use ssdann_layout::nearest::{half_norms, nearest_centroids};
use ssdann_layout::pq::l2_to_all;

/// Points used for k-means++ seeding (the Lloyd iterations use every point).
pub const SEEDING_SAMPLE: usize = 8192;
/// Points assigned per call of the nearest-centroid kernel.
const ASSIGN_BLOCK: usize = 256;

/// Clusters `data` (`n × w` row-major f32) into `k` centroids; returns them transposed
/// (`w × k`: `out[j*k + c]` is coordinate j of centroid c), the layout of
/// [`ssdann_layout::PqCodebook`]'s pivots. Runs at most `max_iters` Lloyd iterations and
/// stops early when fewer than 0.1% of assignments change. Empty clusters are re-seeded with
/// a random point. With n < k, the missing centroids repeat points.
///
/// # Allocates
/// `n` assignments, `k × w` sums (f64).
///
/// The assignment step is [`nearest_centroids`] (½||c||² − x·c, ties to the lower index).
pub fn kmeans_transposed<R: Rng>(
    data: &[f32],
    w: usize,
    k: usize,
    max_iters: usize,
    rng: &mut R,
) -> Vec<f32> {
    let n = data.len() / w;
    assert!(n > 0 && w > 0 && k > 0, "kmeans needs data");
    let row = |i: usize| &data[i * w..(i + 1) * w];
    // k-means++ seeding on a subsample.
    let sample: Vec<usize> = if n <= SEEDING_SAMPLE {
        (0..n).collect()
    } else {
        rand::seq::index::sample(rng, n, SEEDING_SAMPLE).into_vec()
    };
    let mut centers: Vec<f32> = Vec::with_capacity(k * w); // row-major k × w while seeding
    let first = sample[rng.gen_range(0..sample.len())];
    centers.extend_from_slice(row(first));
    // The sample transposed (w × ns), so one centre is compared with every sampled point by
    // the vectorized `l2_to_all`.
    let ns = sample.len();
    let mut sample_t = vec![0f32; w * ns];
    for (s, &i) in sample.iter().enumerate() {
        for (j, &x) in row(i).iter().enumerate() {
            sample_t[j * ns + s] = x;
        }
    }
    let mut best = vec![0f32; ns];
    l2_to_all(row(first), &sample_t, &mut best);
    let mut cur = vec![0f32; ns];
    while centers.len() < k * w {
        let total: f64 = best.iter().map(|&x| f64::from(x)).sum();
        let pick = if total > 0.0 {
            let mut t = rng.gen::<f64>() * total;
            let mut chosen = sample.len() - 1;
            for (s, &b) in best.iter().enumerate() {
                t -= f64::from(b);
                if t <= 0.0 {
                    chosen = s;
                    break;
                }
            }
            chosen
        } else {
            rng.gen_range(0..sample.len())
        };
        let c = row(sample[pick]);
        l2_to_all(c, &sample_t, &mut cur);
        for (b, &x) in best.iter_mut().zip(&cur) {
            *b = b.min(x);
        }
        centers.extend_from_slice(c);
    }
    let mut ct = transpose(&centers, k, w);
    let mut assign = vec![u32::MAX; n];
    let mut nearest = vec![0u32; ASSIGN_BLOCK];
    let mut hn = vec![0f32; k];
    let mut sums = vec![0f64; k * w];
    let mut counts = vec![0usize; k];
    for _ in 0..max_iters {
        let mut changed = 0usize;
        half_norms(&ct, w, &mut hn);
        for (block, a) in data
            .chunks(ASSIGN_BLOCK * w)
            .zip(assign.chunks_mut(ASSIGN_BLOCK))
        {
            let out = &mut nearest[..a.len()];
            nearest_centroids(block, w, &ct, &hn, out);
            for (a, &c) in a.iter_mut().zip(out.iter()) {
                if *a != c {
                    changed += 1;
                    *a = c;
                }
            }
        }
        sums.fill(0.0);
        counts.fill(0);
        for (i, &a) in assign.iter().enumerate() {
            let a = a as usize;
            counts[a] += 1;
            for (s, &x) in sums[a * w..(a + 1) * w].iter_mut().zip(row(i)) {
                *s += f64::from(x);
            }
        }
        for c in 0..k {
            for j in 0..w {
                ct[j * k + c] = if counts[c] > 0 {
                    (sums[c * w + j] / counts[c] as f64) as f32
                } else {
                    0.0
                };
            }
            if counts[c] == 0 {
                let p = rng.gen_range(0..n);
                for j in 0..w {
                    ct[j * k + c] = row(p)[j];
                }
            }
        }
        if changed * 1000 < n {
            break;
        }
    }
    ct
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn recovers_well_separated_clusters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let centers = [[0.0f32, 0.0], [10.0, 10.0], [-10.0, 5.0]];
        let mut data = Vec::new();
        for i in 0..600 {
            let c = centers[i % 3];
            data.push(c[0] + rng.gen_range(-0.5..0.5));
            data.push(c[1] + rng.gen_range(-0.5..0.5));
        }
        let ct = kmeans_transposed(&data, 2, 3, 20, &mut rng);
        for c in centers {
            let found =
                (0..3).any(|k| (ct[k] - c[0]).abs() < 0.2 && (ct[3 + k] - c[1]).abs() < 0.2);
            assert!(found, "center {c:?} not found in {ct:?}");
        }
        // fewer points than clusters still yields k finite centroids
        let ct = kmeans_transposed(&[1.0, 2.0], 1, 4, 5, &mut rng);
        assert_eq!(ct.len(), 4);
        assert!(ct.iter().all(|x| x.is_finite()));
    }
}
