//! Ground-truth files: the exact nearest neighbours of each query (`nq × k` ids and, when the
//! file has them, their distances), read from big-ann-benchmarks `.ibin` or TEXMEX `.ivecs`
//! and written as `.ibin`. Every count is checked against the file's real length.

use super::{extension, map_file, read_u32_at, MAX_DIM};
use crate::error::LayoutError;
use crate::Result;
use std::path::Path;

/// Exact nearest-neighbour lists: `nq × k` ids and (optionally) their distances.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruth {
    /// Number of queries.
    pub nq: usize,
    /// Neighbours per query.
    pub k: usize,
    /// `nq × k` ids, row-major, each row sorted by distance.
    pub ids: Vec<u32>,
    /// `nq × k` distances (squared L2 for L2 data), or empty when the file has none.
    pub distances: Vec<f32>,
}

impl GroundTruth {
    /// Row `q` of the id matrix.
    pub fn row(&self, q: usize) -> &[u32] {
        &self.ids[q * self.k..(q + 1) * self.k]
    }

    /// Reads a big-ann-benchmarks `.ibin` ground-truth file (ids, then optional distances),
    /// or a TEXMEX `.ivecs` file (ids only).
    ///
    /// # Errors
    /// [`LayoutError::Io`], [`LayoutError::SizeMismatch`] (length not `8 + nq·k·4` or
    /// `8 + nq·k·8`), [`LayoutError::InvalidField`] (nq or k zero),
    /// [`LayoutError::UnsupportedExtension`].
    pub fn read(path: impl AsRef<Path>) -> Result<GroundTruth> {
        let path = path.as_ref();
        let ext = extension(path);
        let (map, len) = map_file(path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let words = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        match ext.as_str() {
            "ibin" | "bin" => {
                if len < 8 {
                    return Err(LayoutError::SizeMismatch {
                        path: path.into(),
                        expected_bytes: 8,
                        actual_bytes: len,
                        detail: "the 8-byte header (u32 nq, u32 k)".into(),
                    });
                }
                let nq = u64::from(read_u32_at(bytes, 0));
                let k = u64::from(read_u32_at(bytes, 4));
                if nq == 0 {
                    return Err(LayoutError::field(
                        path,
                        "nq",
                        nq,
                        "the file holds no queries",
                    ));
                }
                if k == 0 {
                    return Err(LayoutError::field(path, "k", k, "k must be at least 1"));
                }
                let cells = nq
                    .checked_mul(k)
                    .ok_or_else(|| LayoutError::field(path, "nq", nq, "nq × k overflows"))?;
                // Checked: nq × k × 4 can pass 2^64 (nq = k = 2^31 wraps to 0).
                let ids_only = cells.checked_mul(4).and_then(|b| b.checked_add(8));
                let with_d = cells.checked_mul(8).and_then(|b| b.checked_add(8));
                if ids_only != Some(len) && with_d != Some(len) {
                    return Err(LayoutError::SizeMismatch {
                        path: path.into(),
                        expected_bytes: with_d.unwrap_or(u64::MAX),
                        actual_bytes: len,
                        detail: format!("header nq = {nq}, k = {k}"),
                    });
                }
                let c = cells as usize;
                let ids = words(&bytes[8..8 + 4 * c]);
                let distances = if with_d == Some(len) {
                    words(&bytes[8 + 4 * c..8 + 8 * c])
                        .into_iter()
                        .map(f32::from_bits)
                        .collect()
                } else {
                    Vec::new()
                };
                Ok(GroundTruth {
                    nq: nq as usize,
                    k: k as usize,
                    ids,
                    distances,
                })
            }
            "ivecs" => {
                if len < 4 {
                    return Err(LayoutError::SizeMismatch {
                        path: path.into(),
                        expected_bytes: 4,
                        actual_bytes: len,
                        detail: "the first row's i32 k".into(),
                    });
                }
                let k = read_u32_at(bytes, 0) as u64;
                if k == 0 || k > MAX_DIM as u64 {
                    return Err(LayoutError::field(
                        path,
                        "k (row 0)",
                        k,
                        format!("must be in 1..={MAX_DIM}"),
                    ));
                }
                let stride = 4 + 4 * k;
                if len % stride != 0 {
                    return Err(LayoutError::SizeMismatch {
                        path: path.into(),
                        expected_bytes: (len / stride + 1) * stride,
                        actual_bytes: len,
                        detail: format!("rows of 4 + {k} × 4 bytes"),
                    });
                }
                let nq = (len / stride) as usize;
                let mut ids = Vec::with_capacity(nq * k as usize);
                for q in 0..nq {
                    let off = q * stride as usize;
                    if u64::from(read_u32_at(bytes, off)) != k {
                        return Err(LayoutError::field(
                            path,
                            "k",
                            read_u32_at(bytes, off),
                            format!("row {q} differs from row 0's k = {k}"),
                        ));
                    }
                    ids.extend(words(&bytes[off + 4..off + stride as usize]));
                }
                Ok(GroundTruth {
                    nq,
                    k: k as usize,
                    ids,
                    distances: Vec::new(),
                })
            }
            _ => Err(LayoutError::UnsupportedExtension {
                path: path.into(),
                ext,
            }),
        }
    }

    /// Writes this ground truth as `.ibin` (ids, then distances when present).
    ///
    /// # Errors
    /// [`LayoutError::Io`] on a failed write; [`LayoutError::InvalidArgument`] when the
    /// arrays do not have `nq × k` entries.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let cells = self.nq * self.k;
        if self.ids.len() != cells || !(self.distances.is_empty() || self.distances.len() == cells)
        {
            return Err(LayoutError::InvalidArgument {
                field: "ground truth",
                value: format!("{} ids", self.ids.len()),
                reason: format!("expected nq × k = {cells}"),
            });
        }
        let mut buf = Vec::with_capacity(8 + cells * 8);
        buf.extend_from_slice(&(self.nq as u32).to_le_bytes());
        buf.extend_from_slice(&(self.k as u32).to_le_bytes());
        self.ids
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        self.distances
            .iter()
            .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
        std::fs::write(path, buf).map_err(|e| LayoutError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dataset::tests::tmp;

    #[test]
    fn ground_truth_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt.ibin");
        let gt = GroundTruth {
            nq: 2,
            k: 3,
            ids: vec![1, 2, 3, 4, 5, 6],
            distances: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        };
        gt.write(&p).unwrap();
        assert_eq!(GroundTruth::read(&p).unwrap(), gt);
        assert_eq!(GroundTruth::read(&p).unwrap().row(1), &[4, 5, 6]);
        let bytes = std::fs::read(&p).unwrap();
        let (_d, q) = tmp("t.ibin", &bytes[..bytes.len() - 3]);
        assert!(matches!(
            GroundTruth::read(&q),
            Err(LayoutError::SizeMismatch { .. })
        ));
        let (_d, q) = tmp("ids.ibin", &bytes[..8 + 24]);
        assert!(GroundTruth::read(&q).unwrap().distances.is_empty());
    }

    #[test]
    fn ibin_whose_nq_times_k_bytes_overflow_is_refused() {
        // nq = k = 2^31: nq × k × 4 = 2^64 wraps to 0, so an 8-byte file once read as an
        // empty ground truth of 2^31 rows whose first `row()` panicked (found by fuzz/).
        let mut b = (1u32 << 31).to_le_bytes().to_vec();
        b.extend_from_slice(&(1u32 << 31).to_le_bytes());
        let (_d, p) = tmp("overflow.ibin", &b);
        match GroundTruth::read(&p) {
            Err(
                e @ LayoutError::SizeMismatch {
                    actual_bytes: 8, ..
                },
            ) => {
                let msg = e.to_string();
                assert!(msg.contains("nq = 2147483648, k = 2147483648"), "{msg}");
            }
            other => panic!("unexpected {other:?}"),
        }
        // The same with room for one id, and the ids-plus-distances wrap (nq × k × 8 = 2^64).
        let mut b = (1u32 << 30).to_le_bytes().to_vec();
        b.extend_from_slice(&(1u32 << 31).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let (_d, p) = tmp("overflow2.ibin", &b);
        assert!(matches!(
            GroundTruth::read(&p),
            Err(LayoutError::SizeMismatch {
                actual_bytes: 12,
                ..
            })
        ));
    }
}
