//! Product quantization codebook (Jégou et al., TPAMI 2011): encoding, asymmetric distance
//! computation (ADC) tables and PQ distance scans. Training lives in the builder.
//!
//! A vector x (length d) is split into M contiguous subspaces (`offsets[m]..offsets[m+1]`,
//! widths may differ by one). Each subspace has K = 256 centroids ("pivots"). The code of x
//! is, per subspace, the index of the pivot nearest to `(x - centroid)` restricted to that
//! subspace: M bytes per vector.
//!
//! Memory: pivots are kept per subspace, transposed (`[m][j][c]`: width × 256), so one query
//! chunk is compared with all 256 pivots by a loop that vectorizes over c; `256 × d × 4`
//! bytes, plus `d × 4` for the centroid. The ADC table is `M × 256` f32.

use crate::distance::Metric;
use crate::error::LayoutError;
pub use crate::pq_adc::{pq_distance, pq_distances, PQ_CENTROIDS};
use crate::storage::StorageRef;
use crate::Result;
use std::path::Path;
use std::sync::OnceLock;

/// Magic of `pq_pivots.bin`.
pub const PQ_PIVOTS_MAGIC: [u8; 8] = *b"SSDPQPIV";
/// Magic of `pq_codes.bin`.
pub const PQ_CODES_MAGIC: [u8; 8] = *b"SSDPQCOD";
/// Version of both PQ files.
pub const PQ_FILE_VERSION: u32 = 1;
/// File name of the pivots inside an index directory.
pub const PQ_PIVOTS_FILE: &str = "pq_pivots.bin";
/// File name of the residual codebook of an index whose records hold neighbour codes
/// (format 2; same file format as `pq_pivots.bin`, docs/FORMAT.md; [`crate::pq_refine`]).
pub const PQ_REFINE_FILE: &str = "pq_refine.bin";
/// File name of the codes inside an index directory.
pub const PQ_CODES_FILE: &str = "pq_codes.bin";

/// Even split of d dimensions into m subspaces: `offsets[i] = ⌊i·d/m⌋` (m + 1 entries).
pub fn even_offsets(d: usize, m: usize) -> Vec<usize> {
    (0..=m).map(|i| i * d / m).collect()
}

/// A trained PQ codebook.
#[derive(Clone, Debug, PartialEq)]
pub struct PqCodebook {
    dim: usize,
    offsets: Vec<usize>,
    centroid: Vec<f32>,
    /// Per subspace m, starting at `offsets[m] × 256`: `width × 256` floats, `[j][c]`.
    pivots_t: Vec<f32>,
    /// The same pivots row-major per subspace (`[c][j]`), so `decode` copies contiguous runs.
    pivots_rm: Vec<f32>,
}

impl PqCodebook {
    /// Builds a codebook from its parts.
    ///
    /// - `offsets`: M + 1 increasing subspace boundaries from 0 to d.
    /// - `centroid`: d floats subtracted before encoding.
    /// - `pivots_t`: `256 × d` floats, per subspace transposed (`[m][j][c]`).
    ///
    /// # Errors
    /// [`LayoutError::InvalidArgument`] when the sizes disagree, a subspace is empty, or a
    /// value is not finite.
    pub fn new(offsets: Vec<usize>, centroid: Vec<f32>, pivots_t: Vec<f32>) -> Result<PqCodebook> {
        let bad = |field: &'static str, value: String, reason: &str| LayoutError::InvalidArgument {
            field,
            value,
            reason: reason.into(),
        };
        let dim = centroid.len();
        if offsets.len() < 2 || offsets[0] != 0 || offsets[offsets.len() - 1] != dim {
            return Err(bad(
                "offsets",
                format!("{offsets:?}"),
                "must run from 0 to d",
            ));
        }
        if offsets.windows(2).any(|w| w[1] <= w[0]) {
            return Err(bad(
                "offsets",
                format!("{offsets:?}"),
                "subspaces must be non-empty and increasing",
            ));
        }
        if pivots_t.len() != PQ_CENTROIDS * dim {
            return Err(bad(
                "pivots",
                pivots_t.len().to_string(),
                "must hold 256 × d floats",
            ));
        }
        if !centroid
            .iter()
            .chain(pivots_t.iter())
            .all(|x| x.is_finite())
        {
            return Err(bad(
                "pivots",
                "non-finite".into(),
                "every value must be finite",
            ));
        }
        let mut pivots_rm = vec![0f32; pivots_t.len()];
        for m in 0..offsets.len() - 1 {
            let (lo, w) = (offsets[m] * PQ_CENTROIDS, offsets[m + 1] - offsets[m]);
            for j in 0..w {
                for c in 0..PQ_CENTROIDS {
                    pivots_rm[lo + c * w + j] = pivots_t[lo + j * PQ_CENTROIDS + c];
                }
            }
        }
        Ok(PqCodebook {
            dim,
            offsets,
            centroid,
            pivots_t,
            pivots_rm,
        })
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Subspaces M (bytes per code).
    pub fn m(&self) -> usize {
        self.offsets.len() - 1
    }
    /// Subspace boundaries (M + 1 entries).
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }
    /// The centroid subtracted before encoding (d floats).
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }
    pub(crate) fn sub_pivots(&self, m: usize) -> &[f32] {
        &self.pivots_t[self.offsets[m] * PQ_CENTROIDS..self.offsets[m + 1] * PQ_CENTROIDS]
    }
    /// Bytes of RAM the codebook takes (pivots in two layouts + centroid + offsets).
    pub fn memory_bytes(&self) -> usize {
        4 * (self.pivots_t.len() + self.pivots_rm.len() + self.centroid.len())
            + 8 * self.offsets.len()
    }

    /// Encodes one vector (length d) into `code` (length M): nearest pivot per subspace by
    /// squared L2 of the residual `x - centroid`. `scratch` must hold d + 256 floats.
    ///
    /// # Panics
    /// If the lengths are wrong (caller invariant).
    pub fn encode(&self, x: &[f32], code: &mut [u8], scratch: &mut Vec<f32>) {
        assert_eq!(x.len(), self.dim);
        assert_eq!(code.len(), self.m());
        scratch.resize(self.dim + PQ_CENTROIDS, 0.0);
        let (resid, dists) = scratch.split_at_mut(self.dim);
        for ((r, &v), &c) in resid.iter_mut().zip(x).zip(&self.centroid) {
            *r = v - c;
        }
        for (m, out) in code.iter_mut().enumerate() {
            let chunk = &resid[self.offsets[m]..self.offsets[m + 1]];
            l2_to_all(chunk, self.sub_pivots(m), dists);
            *out = argmin(dists) as u8;
        }
    }

    /// Reconstructs the vector a code stands for: `centroid + pivots` (length d).
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        assert_eq!(out.len(), self.dim);
        for (m, &cm) in code.iter().enumerate().take(self.m()) {
            let (lo, hi) = (self.offsets[m], self.offsets[m + 1]);
            let w = hi - lo;
            let row = &self.pivots_rm[lo * PQ_CENTROIDS + usize::from(cm) * w
                ..lo * PQ_CENTROIDS + (usize::from(cm) + 1) * w];
            for ((o, &p), &c) in out[lo..hi].iter_mut().zip(row).zip(&self.centroid[lo..hi]) {
                *o = c + p;
            }
        }
    }

    /// Fills the ADC table (`M × 256` f32, row m = subspace m) for query `q` (length d):
    /// for L2 and cosine, `table[m][c] = ||(q - centroid)_m - pivot_{m,c}||²`, so that the sum
    /// over m approximates the squared L2 distance; for inner product,
    /// `table[m][c] = -q_m · (centroid_m + pivot_{m,c})`, whose sum approximates `-q·x`.
    /// `scratch` is reused (d floats).
    pub fn adc_table(&self, q: &[f32], metric: Metric, table: &mut [f32], scratch: &mut Vec<f32>) {
        assert_eq!(q.len(), self.dim);
        assert_eq!(table.len(), self.m() * PQ_CENTROIDS);
        scratch.resize(self.dim, 0.0);
        if metric.uses_l2() {
            for ((r, &v), &c) in scratch.iter_mut().zip(q).zip(&self.centroid) {
                *r = v - c;
            }
            for (m, row) in table.chunks_exact_mut(PQ_CENTROIDS).enumerate() {
                l2_to_all(
                    &scratch[self.offsets[m]..self.offsets[m + 1]],
                    self.sub_pivots(m),
                    row,
                );
            }
        } else {
            for (m, row) in table.chunks_exact_mut(PQ_CENTROIDS).enumerate() {
                let (lo, hi) = (self.offsets[m], self.offsets[m + 1]);
                let qc: f32 = q[lo..hi]
                    .iter()
                    .zip(&self.centroid[lo..hi])
                    .map(|(a, b)| a * b)
                    .sum();
                neg_dot_to_all(&q[lo..hi], self.sub_pivots(m), row);
                row.iter_mut().for_each(|x| *x -= qc);
            }
        }
    }

    /// Writes `pq_pivots.bin` (docs/FORMAT.md, "PQ pivots").
    ///
    /// # Errors
    /// [`LayoutError::Io`].
    pub fn write(&self, path: &Path) -> Result<()> {
        self.write_via(&StorageRef::default(), "blob", path)
    }

    /// [`PqCodebook::write`] through `storage`, its fsync named `site`.
    ///
    /// # Errors
    /// [`LayoutError::Io`].
    pub fn write_via(&self, storage: &StorageRef, site: &'static str, path: &Path) -> Result<()> {
        let mut body =
            Vec::with_capacity(4 * (self.offsets.len() + self.dim + self.pivots_t.len()));
        self.offsets
            .iter()
            .for_each(|&o| body.extend_from_slice(&(o as u32).to_le_bytes()));
        self.centroid
            .iter()
            .chain(&self.pivots_t)
            .for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
        let fields = [self.dim as u64, self.m() as u64, PQ_CENTROIDS as u64];
        crate::blob::write_blob_via(
            storage,
            site,
            path,
            &PQ_PIVOTS_MAGIC,
            PQ_FILE_VERSION,
            &fields,
            &body,
        )
    }

    /// Reads and validates `pq_pivots.bin`.
    ///
    /// # Errors
    /// Any [`crate::blob::read_blob`] error; [`LayoutError::InvalidField`] when d, M or K are
    /// out of range or the body size disagrees with them; [`LayoutError::Corrupt`] for bad
    /// offsets or non-finite values.
    pub fn read(path: &Path) -> Result<PqCodebook> {
        let blob = crate::blob::read_blob(path, &PQ_PIVOTS_MAGIC, PQ_FILE_VERSION)?;
        if blob.fields.len() < 3 {
            return Err(LayoutError::corrupt(
                path,
                "header",
                format!("{} fields, expected 3", blob.fields.len()),
            ));
        }
        let (d, m, k) = (blob.fields[0], blob.fields[1], blob.fields[2]);
        if d == 0 || d > crate::dataset::MAX_DIM as u64 {
            return Err(LayoutError::field(path, "d", d, "must be in 1..=65536"));
        }
        if m == 0 || m > d {
            return Err(LayoutError::field(
                path,
                "M",
                m,
                format!("must be in 1..=d ({d})"),
            ));
        }
        if k != PQ_CENTROIDS as u64 {
            return Err(LayoutError::field(path, "K", k, "must be 256"));
        }
        let (d, m) = (d as usize, m as usize);
        let expected = 4 * ((m + 1) + d + PQ_CENTROIDS * d);
        if blob.body.len() != expected {
            return Err(LayoutError::field(
                path,
                "body_bytes",
                blob.body.len(),
                format!("d = {d}, M = {m} need {expected}"),
            ));
        }
        let words: Vec<u32> = blob
            .body
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let offsets: Vec<usize> = words[..m + 1].iter().map(|&x| x as usize).collect();
        let floats: Vec<f32> = words[m + 1..].iter().map(|&x| f32::from_bits(x)).collect();
        let (centroid, pivots) = floats.split_at(d);
        PqCodebook::new(offsets, centroid.to_vec(), pivots.to_vec())
            .map_err(|e| LayoutError::corrupt(path, "body", e.to_string()))
    }
}

/// Stores n × M PQ codes in `pq_codes.bin` (docs/FORMAT.md, "PQ codes").
///
/// # Errors
/// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] if `codes.len() != n × m`.
pub fn write_codes(path: &Path, n: usize, m: usize, codes: &[u8]) -> Result<()> {
    write_codes_via(&StorageRef::default(), "blob", path, n, m, codes)
}

/// [`write_codes`] through `storage`, its fsync named `site`.
///
/// # Errors
/// As [`write_codes`].
pub fn write_codes_via(
    storage: &StorageRef,
    site: &'static str,
    path: &Path,
    n: usize,
    m: usize,
    codes: &[u8],
) -> Result<()> {
    if codes.len() != n * m {
        return Err(LayoutError::InvalidArgument {
            field: "codes",
            value: codes.len().to_string(),
            reason: format!("expected n × M = {n} × {m}"),
        });
    }
    crate::blob::write_blob_via(
        storage,
        site,
        path,
        &PQ_CODES_MAGIC,
        PQ_FILE_VERSION,
        &[n as u64, m as u64],
        codes,
    )
}

/// Writes `pq_codes.bin` for `n` codes of `m` bytes, filled slot by slot by
/// `code_of(slot, out)`, without holding them in RAM.
///
/// # Errors
/// [`LayoutError::Io`].
pub fn write_codes_with(
    path: &Path,
    n: usize,
    m: usize,
    code_of: impl Fn(usize, &mut [u8]),
) -> Result<()> {
    let mut w = crate::blob::BlobWriter::create(
        path,
        &PQ_CODES_MAGIC,
        PQ_FILE_VERSION,
        &[n as u64, m as u64],
        (n * m) as u64,
    )?;
    let per = (1usize << 20) / m.max(1) + 1;
    let mut buf = Vec::with_capacity(per * m);
    for start in (0..n).step_by(per) {
        let end = (start + per).min(n);
        buf.resize((end - start) * m, 0);
        for (i, out) in buf.chunks_exact_mut(m.max(1)).enumerate() {
            code_of(start + i, out);
        }
        w.write(&buf)?;
    }
    w.finish()
}

/// Reads `pq_codes.bin`; returns (n, M, codes).
///
/// # Errors
/// Any [`crate::blob::read_blob`] error; [`LayoutError::InvalidField`] when the body is not
/// n × M bytes.
pub fn read_codes(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let blob = crate::blob::read_blob(path, &PQ_CODES_MAGIC, PQ_FILE_VERSION)?;
    if blob.fields.len() < 2 {
        return Err(LayoutError::corrupt(
            path,
            "header",
            format!("{} fields, expected 2", blob.fields.len()),
        ));
    }
    let (n, m) = (blob.fields[0], blob.fields[1]);
    if m == 0 || n.checked_mul(m) != Some(blob.body.len() as u64) {
        return Err(LayoutError::field(
            path,
            "n × M",
            format!("{n} × {m}"),
            format!("body holds {} bytes", blob.body.len()),
        ));
    }
    Ok((n as usize, m as usize, blob.body))
}

/// Index of the smallest value (first on ties); 0 for an empty slice. AVX2 when present.
#[inline]
pub fn argmin(v: &[f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if v.len() >= 8 && has_avx2() {
        // SAFETY: AVX2 was detected at run time; the impl reads only indices < v.len().
        return unsafe { argmin_avx2(v) };
    }
    argmin_scalar(v)
}

fn argmin_scalar(v: &[f32]) -> usize {
    let mut best = 0;
    let mut bv = f32::INFINITY;
    for (i, &x) in v.iter().enumerate() {
        if x < bv {
            bv = x;
            best = i;
        }
    }
    best
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn argmin_avx2(v: &[f32]) -> usize {
    use std::arch::x86_64::*;
    let n = v.len();
    let p = v.as_ptr();
    // Pass 1: the minimum value (NaN never wins: min_ps keeps the second operand on NaN).
    let mut m = _mm256_loadu_ps(p);
    let mut i = 8;
    while i + 8 <= n {
        m = _mm256_min_ps(_mm256_loadu_ps(p.add(i)), m);
        i += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    let mut best = lanes.iter().copied().fold(f32::INFINITY, f32::min);
    for &x in &v[i..] {
        best = best.min(x);
    }
    // Pass 2: the first index holding it.
    let target = _mm256_set1_ps(best);
    let mut j = 0;
    while j + 8 <= n {
        let mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(p.add(j)), target, _CMP_EQ_OQ));
        if mask != 0 {
            return j + mask.trailing_zeros() as usize;
        }
        j += 8;
    }
    j + v[j..].iter().position(|&x| x == best).unwrap_or(0)
}

#[inline(always)]
fn l2_to_all_body(x: &[f32], ct: &[f32], out: &mut [f32]) {
    let k = out.len();
    out.fill(0.0);
    for (j, &xj) in x.iter().enumerate() {
        let row = &ct[j * k..(j + 1) * k];
        for (o, &p) in out.iter_mut().zip(row) {
            let d = xj - p;
            *o += d * d;
        }
    }
}

#[inline(always)]
fn neg_dot_to_all_body(x: &[f32], ct: &[f32], out: &mut [f32]) {
    let k = out.len();
    out.fill(0.0);
    for (j, &xj) in x.iter().enumerate() {
        let row = &ct[j * k..(j + 1) * k];
        for (o, &p) in out.iter_mut().zip(row) {
            *o -= xj * p;
        }
    }
}

/// Register-blocked AVX2 kernel: 64 centroids (8 × 8 lanes) per block stay in registers
/// while the w coordinates stream by, so `out` is written once instead of w times.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_to_all_avx2(x: &[f32], ct: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let k = out.len();
    if !k.is_multiple_of(64) {
        return l2_to_all_body(x, ct, out);
    }
    let p = ct.as_ptr();
    let o = out.as_mut_ptr();
    let mut c0 = 0;
    while c0 < k {
        let mut acc = [_mm256_setzero_ps(); 8];
        for (j, &xj) in x.iter().enumerate() {
            let xv = _mm256_set1_ps(xj);
            let row = p.add(j * k + c0);
            for (r, a) in acc.iter_mut().enumerate() {
                let d = _mm256_sub_ps(_mm256_loadu_ps(row.add(8 * r)), xv);
                *a = _mm256_fmadd_ps(d, d, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(o.add(c0 + 8 * r), *a);
        }
        c0 += 64;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn neg_dot_to_all_avx2(x: &[f32], ct: &[f32], out: &mut [f32]) {
    neg_dot_to_all_body(x, ct, out)
}

/// AVX2 and FMA detected at run time (once), unless `SSDANN_FORCE_SCALAR` is set.
pub(crate) fn has_avx2() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::env::var_os("SSDANN_FORCE_SCALAR").is_none()
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Squared L2 distance of `x` (width w) to each of k centroids stored transposed in `ct`
/// (`w × k`, `ct[j*k + c]` = coordinate j of centroid c); k = `out.len()`.
/// Vectorized over the centroids (AVX2 when present).
///
/// # Panics
/// If `ct.len() != x.len() × out.len()`.
pub fn l2_to_all(x: &[f32], ct: &[f32], out: &mut [f32]) {
    assert_eq!(ct.len(), x.len() * out.len(), "l2_to_all: shape mismatch");
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time; shapes were checked above.
        unsafe { l2_to_all_avx2(x, ct, out) };
        return;
    }
    l2_to_all_body(x, ct, out)
}

/// Negated inner product of `x` with each of k transposed centroids (see [`l2_to_all`]).
///
/// # Panics
/// If `ct.len() != x.len() × out.len()`.
pub fn neg_dot_to_all(x: &[f32], ct: &[f32], out: &mut [f32]) {
    assert_eq!(
        ct.len(),
        x.len() * out.len(),
        "neg_dot_to_all: shape mismatch"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected at run time; shapes were checked above.
        unsafe { neg_dot_to_all_avx2(x, ct, out) };
        return;
    }
    neg_dot_to_all_body(x, ct, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> PqCodebook {
        // d = 3, M = 2 (widths 1 and 2); pivot c has value c in every coordinate.
        let d = 3;
        let offsets = even_offsets(d, 2);
        assert_eq!(offsets, vec![0, 1, 3]);
        let mut piv = vec![0.0; 256 * d];
        for m in 0..2 {
            for j in 0..(offsets[m + 1] - offsets[m]) {
                for c in 0..256 {
                    piv[offsets[m] * 256 + j * 256 + c] = c as f32;
                }
            }
        }
        PqCodebook::new(offsets, vec![1.0; d], piv).unwrap()
    }

    #[test]
    fn encode_decode_adc() {
        let pq = toy();
        let mut code = [0u8; 2];
        let mut s = Vec::new();
        pq.encode(&[11.2, 4.0, 5.9], &mut code, &mut s);
        // residual (10.2, 3.0, 4.9): subspace 0 → 10, subspace 1 → nearest of (c, c) to (3, 4.9) is 4
        assert_eq!(code, [10, 4]);
        let mut rec = [0.0; 3];
        pq.decode(&code, &mut rec);
        assert_eq!(rec, [11.0, 5.0, 5.0]);
        let mut table = vec![0.0; 2 * 256];
        let q = [11.2f32, 4.0, 5.9];
        pq.adc_table(&q, Metric::L2, &mut table, &mut s);
        let exact = crate::distance::scalar::l2_sq_f32(&q, &rec);
        assert!((pq_distance(&table, &code) - exact).abs() < 1e-4);
        pq.adc_table(&q, Metric::InnerProduct, &mut table, &mut s);
        let exact = -crate::distance::scalar::dot_f32(&q, &rec);
        assert!((pq_distance(&table, &code) - exact).abs() < 1e-3);
        let mut out = [0.0f32; 1];
        pq_distances(&table, &code, 2, &[0], &mut out);
        assert_eq!(out[0], pq_distance(&table, &code));
    }

    #[test]
    fn l2_to_all_simd_matches_body() {
        for w in [1usize, 3, 8, 9] {
            for k in [64usize, 256, 100] {
                let x: Vec<f32> = (0..w).map(|i| i as f32 * 0.37 - 1.0).collect();
                let ct: Vec<f32> = (0..w * k).map(|i| ((i * 13) % 17) as f32 * 0.1).collect();
                let (mut a, mut b) = (vec![0f32; k], vec![0f32; k]);
                l2_to_all(&x, &ct, &mut a);
                l2_to_all_body(&x, &ct, &mut b);
                for (p, q) in a.iter().zip(&b) {
                    assert!(
                        (p - q).abs() <= 1e-4 * (1.0 + q.abs()),
                        "w {w} k {k}: {p} vs {q}"
                    );
                }
            }
        }
    }

    #[test]
    fn argmin_matches_scalar() {
        for n in [1usize, 7, 8, 9, 16, 255, 256, 257] {
            for pos in [0, n / 2, n - 1] {
                let mut v: Vec<f32> = (0..n).map(|i| 100.0 + ((i * 37) % 11) as f32).collect();
                v[pos] = -1.0;
                assert_eq!(argmin(&v), pos, "n {n} pos {pos}");
                assert_eq!(argmin_scalar(&v), pos);
            }
        }
        let ties = vec![3.0f32; 20];
        assert_eq!(argmin(&ties), 0);
    }

    #[test]
    fn files_round_trip_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let pq = toy();
        let p = dir.path().join(PQ_PIVOTS_FILE);
        pq.write(&p).unwrap();
        assert_eq!(PqCodebook::read(&p).unwrap(), pq);
        let c = dir.path().join(PQ_CODES_FILE);
        write_codes(&c, 3, 2, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(read_codes(&c).unwrap(), (3, 2, vec![1, 2, 3, 4, 5, 6]));
        assert!(write_codes(&c, 4, 2, &[0; 6]).is_err());
        assert!(PqCodebook::new(vec![0, 0, 3], vec![0.0; 3], vec![0.0; 768]).is_err());
        assert!(PqCodebook::new(vec![0, 3], vec![0.0; 3], vec![0.0; 767]).is_err());
    }
}
