//! Neighbour codes' residual level (format 2, docs/FORMAT.md "Node blocks"): the ADC table
//! of a residual codebook and the encoding of one point's neighbour code. The residual
//! codebook is an ordinary [`PqCodebook`] trained on `x − PQ(x)` (two-level residual
//! quantization, Juang & Gray 1982), stored as `pq_refine.bin`.

use crate::distance::Metric;
pub use crate::pq::PQ_REFINE_FILE;
use crate::pq::{neg_dot_to_all, PqCodebook, PQ_CENTROIDS};

impl PqCodebook {
    /// Fills the refinement ADC table (`M₂ × 256` f32) of this residual codebook for query `q`
    /// (length d) of an index whose first-level codebook is `base`. With `x ≈ base(c₁) + r(c₂)`
    /// (`r(c₂)` = this codebook's centroid + pivots), for L2 and cosine
    /// `‖q − x‖² ≈ ADC₁ + Σ_m table[m][c₂ₘ] + t` with `table[m][c] = −2 (q − centroid₁)ₘ · r_{m,c}`
    /// and the per-point term `t = 2 (base(c₁) − centroid₁) · r(c₂) + ‖r(c₂)‖²` stored with the code
    /// ([`PqCodebook::encode_refinement`]); for inner product `table[m][c] = −qₘ · r_{m,c}`
    /// and `t = 0`. `scratch` is reused (d floats).
    pub fn refine_table(
        &self,
        base: &PqCodebook,
        q: &[f32],
        metric: Metric,
        table: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        assert_eq!(q.len(), self.dim());
        assert_eq!(table.len(), self.m() * PQ_CENTROIDS);
        scratch.clear();
        let factor = if metric.uses_l2() {
            scratch.extend(q.iter().zip(base.centroid()).map(|(&v, &c)| v - c));
            2.0
        } else {
            scratch.extend_from_slice(q);
            1.0
        };
        for (m, row) in table.chunks_exact_mut(PQ_CENTROIDS).enumerate() {
            let (lo, hi) = (self.offsets()[m], self.offsets()[m + 1]);
            let qc: f32 = scratch[lo..hi]
                .iter()
                .zip(&self.centroid()[lo..hi])
                .map(|(a, b)| a * b)
                .sum();
            neg_dot_to_all(&scratch[lo..hi], self.sub_pivots(m), row);
            row.iter_mut().for_each(|x| *x = factor * (*x - qc));
        }
    }

    /// Writes the neighbour code of vector `x` (length d, whose first-level code under `base`
    /// is `code1`) into `out` (`M₂ + 4` bytes): this codebook's code of the residual
    /// `x − base(code1)`, then the f32 term `t` of [`PqCodebook::refine_table`] (LE).
    /// `scratch` is reused (4d + 256 floats).
    ///
    /// # Panics
    /// If the lengths are wrong (caller invariant).
    pub fn encode_refinement(
        &self,
        base: &PqCodebook,
        x: &[f32],
        code1: &[u8],
        metric: Metric,
        out: &mut [u8],
        scratch: &mut Vec<f32>,
    ) {
        let (d, m2) = (self.dim(), self.m());
        assert_eq!(out.len(), m2 + 4);
        scratch.resize(3 * d, 0.0);
        let (rec1, rest) = scratch.split_at_mut(d);
        let (resid, rec2) = rest.split_at_mut(d);
        base.decode(code1, rec1);
        for ((r, &v), &b) in resid.iter_mut().zip(x).zip(rec1.iter()) {
            *r = v - b;
        }
        let mut enc_scratch = Vec::with_capacity(d + PQ_CENTROIDS);
        self.encode(resid, &mut out[..m2], &mut enc_scratch);
        self.decode(&out[..m2], rec2);
        let t = if metric.uses_l2() {
            let cross: f32 = rec1
                .iter()
                .zip(base.centroid())
                .zip(rec2.iter())
                .map(|((&a, &c), &r)| (a - c) * r)
                .sum();
            2.0 * cross + rec2.iter().map(|r| r * r).sum::<f32>()
        } else {
            0.0
        };
        out[m2..].copy_from_slice(&t.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pq::{even_offsets, pq_distance};

    /// A codebook of d = 6, M subspaces, pivots from a fixed pseudo-random sequence.
    fn pseudo(m: usize, seed: u32) -> PqCodebook {
        let d = 6;
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let centroid: Vec<f32> = (0..d).map(|_| next()).collect();
        let pivots: Vec<f32> = (0..256 * d).map(|_| next()).collect();
        PqCodebook::new(even_offsets(d, m), centroid, pivots).unwrap()
    }

    #[test]
    fn refinement_adds_up_to_the_distance_to_both_levels_reconstruction() {
        let (base, refine) = (pseudo(3, 1), pseudo(2, 2));
        let x = [0.3f32, -0.2, 0.1, 0.05, 0.4, -0.35];
        let q = [0.1f32, 0.2, -0.3, 0.25, -0.1, 0.0];
        let mut s = Vec::new();
        let mut c1 = [0u8; 3];
        base.encode(&x, &mut c1, &mut s);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut code = [0u8; 2 + 4];
            refine.encode_refinement(&base, &x, &c1, metric, &mut code, &mut s);
            let (mut r1, mut r2) = ([0f32; 6], [0f32; 6]);
            base.decode(&c1, &mut r1);
            refine.decode(&code[..2], &mut r2);
            let (mut t1, mut t2) = (vec![0f32; 3 * 256], vec![0f32; 2 * 256]);
            base.adc_table(&q, metric, &mut t1, &mut s);
            refine.refine_table(&base, &q, metric, &mut t2, &mut s);
            let t = f32::from_le_bytes([code[2], code[3], code[4], code[5]]);
            let est = pq_distance(&t1, &c1) + pq_distance(&t2, &code[..2]) + t;
            let exact: f32 = if metric.uses_l2() {
                (0..6).map(|j| (q[j] - r1[j] - r2[j]).powi(2)).sum()
            } else {
                -(0..6).map(|j| q[j] * (r1[j] + r2[j])).sum::<f32>()
            };
            assert!((est - exact).abs() < 1e-5, "{metric:?}: {est} vs {exact}");
            // and it is closer to x than the first level alone
            let e2: f32 = (0..6).map(|j| (x[j] - r1[j] - r2[j]).powi(2)).sum();
            let e1: f32 = (0..6).map(|j| (x[j] - r1[j]).powi(2)).sum();
            assert!(e2 <= e1, "{e2} > {e1}");
        }
    }
}
