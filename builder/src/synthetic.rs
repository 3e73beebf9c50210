//! A deterministic, clustered synthetic data set: the stand-in for real vectors in `demo`
//! and in tests on a clone without `../shared/data`.
//!
//! Points are drawn around `clusters` random centres (Gaussian-like noise from a sum of
//! uniforms) and L2-normalized, so they resemble sentence embeddings more than uniform noise
//! does. The generator is splitmix64, so the data is the same on every machine and version.

/// splitmix64: a tiny, fixed pseudo-random generator (Steele et al., 2014).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    /// Approximately normal (mean 0, variance 1): sum of 4 uniforms, scaled.
    pub fn normal(&mut self) -> f32 {
        (self.unit() + self.unit() + self.unit() + self.unit()) * 0.866
    }
}

/// Generates `n` base and `nq` query vectors of dimension `dim` around `clusters` centres;
/// returns (base, queries), each row-major (n × d, nq × d), every row of unit L2 norm.
pub fn clustered(
    n: usize,
    nq: usize,
    dim: usize,
    clusters: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = SplitMix64(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
    let mut gen = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            let c = (rng.next_u64() % clusters as u64) as usize;
            let spread = 0.35 + 0.3 * (rng.unit() + 1.0) * 0.5;
            let start = out.len();
            for j in 0..dim {
                out.push(centres[c * dim + j] + spread * rng.normal());
            }
            ssdann_layout::distance::normalize(&mut out[start..]);
        }
        out
    };
    let base = gen(n);
    let queries = gen(nq);
    (base, queries)
}

#[cfg(test)]
mod tests {
    #[test]
    fn deterministic_and_normalized() {
        let (a, q) = super::clustered(50, 5, 8, 4, 1);
        let (b, _) = super::clustered(50, 5, 8, 4, 1);
        assert_eq!(a, b);
        assert_eq!((a.len(), q.len()), (400, 40));
        for row in a.chunks(8) {
            let norm: f32 = row.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-4);
        }
        assert_eq!(super::SplitMix64(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }
}
