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

/// A stream of clustered rows: `clusters` centres drawn from N(0, 1)^d, each row a centre
/// plus N(0, σ²) noise with σ uniform in [0.35, 0.65), then L2-normalized (f32) — or, for
/// [`Clustered::next_u8`], not normalized and mapped to `clamp(round(128 + 40·x), 0, 255)`
/// (a SIFT-like byte distribution). Deterministic for a seed.
#[derive(Clone, Debug)]
pub struct Clustered {
    rng: SplitMix64,
    centres: Vec<f32>,
    dim: usize,
    clusters: usize,
}

impl Clustered {
    /// A stream of rows of dimension `dim` around `clusters` centres (both ≥ 1).
    pub fn new(dim: usize, clusters: usize, seed: u64) -> Clustered {
        let mut rng = SplitMix64(seed);
        let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
        Clustered {
            rng,
            centres,
            dim,
            clusters,
        }
    }

    fn raw(&mut self, out: &mut [f32]) {
        let c = (self.rng.next_u64() % self.clusters as u64) as usize;
        let spread = 0.35 + 0.3 * (self.rng.unit() + 1.0) * 0.5;
        for (j, o) in out.iter_mut().enumerate().take(self.dim) {
            *o = self.centres[c * self.dim + j] + spread * self.rng.normal();
        }
    }

    /// The next row, unit L2 norm (`out`: d values).
    pub fn next_f32(&mut self, out: &mut [f32]) {
        self.raw(out);
        ssdann_layout::distance::normalize(&mut out[..self.dim]);
    }

    /// The next row as bytes (`out`: d values; `scratch`: d floats).
    pub fn next_u8(&mut self, out: &mut [u8], scratch: &mut [f32]) {
        self.raw(scratch);
        out.iter_mut()
            .zip(scratch.iter())
            .for_each(|(o, &x)| *o = (128.0 + 40.0 * x).round().clamp(0.0, 255.0) as u8);
    }
}

/// Generates `n` base and `nq` query vectors of dimension `dim` around `clusters` centres;
/// returns (base, queries), each row-major (n × d, nq × d), every row of unit L2 norm.
/// The same rows as a [`Clustered`] stream: base first, then queries.
pub fn clustered(
    n: usize,
    nq: usize,
    dim: usize,
    clusters: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut g = Clustered::new(dim, clusters, seed);
    let mut gen = |count: usize| {
        let mut out = vec![0f32; count * dim];
        out.chunks_exact_mut(dim).for_each(|r| g.next_f32(r));
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
        // bytes: deterministic, spread over the range, clustered (rows of one centre agree)
        let mut g = super::Clustered::new(16, 3, 9);
        let mut h = super::Clustered::new(16, 3, 9);
        let (mut a, mut b, mut s) = ([0u8; 16], [0u8; 16], [0f32; 16]);
        let mut seen = [false; 256];
        for _ in 0..500 {
            g.next_u8(&mut a, &mut s);
            h.next_u8(&mut b, &mut s);
            assert_eq!(a, b);
            a.iter().for_each(|&x| seen[x as usize] = true);
        }
        assert!(seen.iter().filter(|&&x| x).count() > 150);
    }
}
