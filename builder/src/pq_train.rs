//! PQ training and encoding for the build (Jégou et al., TPAMI 2011; DiskANN §3.2 keeps
//! these codes in RAM). Train on a random sample of at most [`MAX_TRAINING_SAMPLE`] points:
//! subtract the sample mean, split d into M subspaces, and run k-means (256 centroids) per
//! subspace, subspaces in parallel.

use crate::progress::{Phase, Progress};
use rand::SeedableRng;
use rayon::prelude::*;
use ssdann_layout::pq::{even_offsets, PQ_CENTROIDS};
use ssdann_layout::{Element, PqCodebook};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most points PQ is trained on.
pub const MAX_TRAINING_SAMPLE: usize = 256 * 1024;
/// Lloyd iteration cap per subspace.
pub const KMEANS_ITERS: usize = 12;

/// Default M: codes of about 1/8 of the raw vector bytes (`d × element bytes / 8`) and at
/// least one byte per 4 dimensions (`d / 4`) — so d/2 for f32 and d/4 for u8/i8 — moved to a
/// divisor of d when one lies within ±25% (so subspaces are equal), clamped to `1..=d`.
///
/// From the M table in docs/PERFORMANCE.md (issue 14, part 1): build time does not depend on
/// M (±10% from M = 24 to 192 on 384-d f32); recall at a given L rises steeply up to about
/// these values and flattens after; u8 at d/8 = 16 bytes found 0.963 at L = 50 against
/// 0.996 at d/4 = 32.
pub fn default_pq_m(dim: usize, element_bytes: usize) -> usize {
    let target = ((dim * element_bytes) as f64 / 8.0).round().max(1.0) as usize;
    let target = target.max(dim.div_ceil(4));
    let target = target.clamp(1, dim);
    let lo = (target as f64 * 0.75).floor() as usize;
    let hi = ((target as f64 * 1.25).ceil() as usize).min(dim);
    (lo.max(1)..=hi)
        .filter(|m| dim.is_multiple_of(*m))
        .min_by_key(|&m| (m as i64 - target as i64).abs())
        .unwrap_or(target)
}

/// Trains an M-subspace codebook on `data` (n × d row-major, any element type).
pub fn train_pq<T: Element>(
    data: &[T],
    dim: usize,
    m: usize,
    seed: u64,
    progress: &dyn Progress,
) -> PqCodebook {
    let n = data.len() / dim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let rows: Vec<usize> = if n <= MAX_TRAINING_SAMPLE {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, MAX_TRAINING_SAMPLE).into_vec()
    };
    let ns = rows.len();
    // The centroid (mean of the sample), streamed: no f32 copy of the whole sample is made,
    // so training adds only one subspace slice per worker (ns × width floats) to the RSS.
    let mut mean = vec![0f64; dim];
    for &r in &rows {
        mean.iter_mut()
            .zip(&data[r * dim..(r + 1) * dim])
            .for_each(|(a, &x)| *a += f64::from(x.to_f32()));
    }
    let centroid: Vec<f32> = mean.iter().map(|&s| (s / ns as f64) as f32).collect();
    let offsets = even_offsets(dim, m);
    progress.start(Phase::PqTraining, m as u64);
    let subspaces: Vec<Vec<f32>> = (0..m)
        .into_par_iter()
        .map(|s| {
            let (lo, hi) = (offsets[s], offsets[s + 1]);
            let w = hi - lo;
            let mut sub = Vec::with_capacity(ns * w);
            for &r in &rows {
                let row = &data[r * dim..(r + 1) * dim];
                sub.extend(
                    row[lo..hi]
                        .iter()
                        .zip(&centroid[lo..hi])
                        .map(|(&x, &c)| x.to_f32() - c),
                );
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                seed ^ (s as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            let ct =
                crate::kmeans::kmeans_transposed(&sub, w, PQ_CENTROIDS, KMEANS_ITERS, &mut rng);
            progress.advance(1);
            ct
        })
        .collect();
    progress.finish();
    let pivots_t: Vec<f32> = subspaces.into_iter().flatten().collect();
    // Invariant: every part was built from finite data with matching shapes.
    PqCodebook::new(offsets, centroid, pivots_t).expect("trained codebook is well-formed")
}

/// Encodes every row of `data` (n × d) with `pq`, in parallel: returns n × M code bytes.
pub fn encode_all<T: Element>(
    pq: &PqCodebook,
    data: &[T],
    dim: usize,
    progress: &dyn Progress,
) -> Vec<u8> {
    let n = data.len() / dim;
    let m = pq.m();
    let mut codes = vec![0u8; n * m];
    progress.start(Phase::PqEncoding, n as u64);
    let done = AtomicU64::new(0);
    codes.par_chunks_mut(m * 1024).enumerate().for_each_init(
        || (vec![0f32; dim], Vec::new()),
        |(x, scratch), (chunk_idx, out)| {
            for (k, code) in out.chunks_exact_mut(m).enumerate() {
                let i = chunk_idx * 1024 + k;
                for (o, &v) in x.iter_mut().zip(&data[i * dim..(i + 1) * dim]) {
                    *o = v.to_f32();
                }
                pq.encode(x, code, scratch);
            }
            let k = (out.len() / m) as u64;
            done.fetch_add(k, Ordering::Relaxed);
            progress.advance(k);
        },
    );
    progress.finish();
    codes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_m_is_an_eighth_of_raw_bytes_and_at_least_a_quarter_of_d_near_a_divisor() {
        assert_eq!(default_pq_m(384, 4), 192);
        assert_eq!(default_pq_m(128, 4), 64);
        assert_eq!(default_pq_m(128, 1), 32);
        assert_eq!(default_pq_m(96, 1), 24);
        assert_eq!(default_pq_m(100, 4), 50);
        assert_eq!(default_pq_m(4, 1), 1);
        assert_eq!(default_pq_m(97, 4), 49); // prime d: no divisor near, keep the target
    }
}
