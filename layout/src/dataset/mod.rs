//! Dataset files: memory-mapped readers for base/query vectors and ground truth, and writers.
//!
//! Formats (all little-endian):
//! - big-ann-benchmarks `.fbin` / `.u8bin` / `.i8bin`: `u32 n, u32 d`, then `n × d` elements,
//!   row-major (f32, u8, i8).
//! - TEXMEX `.fvecs` / `.bvecs` / `.ivecs`: every row is `i32 d` followed by `d` elements
//!   (f32, u8, i32); every row must have the same d.
//! - NumPy `.npy` (format 1.0, 2.0, 3.0): a 2-D C-order array of `<f4`, `|u1` or `|i1`.
//! - ground truth `.ibin` (big-ann-benchmarks): `u32 nq, u32 k`, `nq × k` u32 ids, then
//!   optionally `nq × k` f32 distances, each list sorted by distance.
//!
//! Every count is checked against the file's real length (checked arithmetic) before use.

use crate::distance::Element;
pub use crate::distance::ElementType;
use crate::error::LayoutError;
use crate::Result;
use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

mod ground_truth;
mod npy;
pub use ground_truth::GroundTruth;
pub use npy::npy_bytes;

/// Largest dimension accepted from a file (a guard against absurd headers).
pub const MAX_DIM: usize = 65_536;

/// A memory-mapped vector file (`n × d` vectors of one element type).
///
/// Opening validates the header against the file length; values are not read until asked
/// ([`VectorFile::check_finite`] scans f32 files for NaN/inf).
pub struct VectorFile {
    path: PathBuf,
    map: Option<memmap2::Mmap>,
    elem: ElementType,
    n: usize,
    dim: usize,
    /// Byte offset of row 0's first element.
    data_offset: usize,
    /// Bytes from one row's first element to the next row's.
    row_stride: usize,
}

fn file_len(path: &Path, file: &File) -> Result<u64> {
    Ok(file.metadata().map_err(|e| LayoutError::io(path, e))?.len())
}

fn read_u32_at(bytes: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[off..off + 4]);
    u32::from_le_bytes(b)
}

fn map_file(path: &Path) -> Result<(Option<memmap2::Mmap>, u64)> {
    let file = File::open(path).map_err(|e| LayoutError::io(path, e))?;
    let len = file_len(path, &file)?;
    if len == 0 {
        return Ok((None, 0));
    }
    // SAFETY: the map is read-only and private to this process; ssdann never writes dataset
    // files, and a concurrent external truncation is outside the supported contract (as for
    // every mmap-based reader).
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LayoutError::io(path, e))?;
    Ok((Some(map), len))
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl VectorFile {
    /// Opens and validates a vector file; the format is chosen by extension.
    ///
    /// # Errors
    /// - [`LayoutError::Io`]: the file cannot be opened or mapped.
    /// - [`LayoutError::UnsupportedExtension`]: not `.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy`.
    /// - [`LayoutError::SizeMismatch`]: empty or truncated file, or a length that does not
    ///   match `n × d`.
    /// - [`LayoutError::InvalidField`]: `n` or `d` is zero, `d` > [`MAX_DIM`], rows of
    ///   different d (vecs), an unsupported npy dtype or order.
    pub fn open(path: impl AsRef<Path>) -> Result<VectorFile> {
        let path = path.as_ref();
        let ext = extension(path);
        let elem = match ext.as_str() {
            "fbin" | "fvecs" => ElementType::F32,
            "u8bin" | "bvecs" => ElementType::U8,
            "i8bin" => ElementType::I8,
            "npy" => ElementType::F32, // refined from the header below
            _ => {
                return Err(LayoutError::UnsupportedExtension {
                    path: path.into(),
                    ext,
                })
            }
        };
        let (map, len) = map_file(path)?;
        let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
        let (elem, n, dim, data_offset, row_stride) = match ext.as_str() {
            "fbin" | "u8bin" | "i8bin" => Self::parse_bin(path, bytes, elem)?,
            "fvecs" | "bvecs" => Self::parse_vecs(path, bytes, elem)?,
            _ => npy::parse_npy(path, bytes)?,
        };
        // Pair assertion: the parsers checked this; check again before any row is sliced.
        assert!(
            data_offset as u64
                + (n as u64 - 1) * row_stride as u64
                + (dim * elem.size_bytes()) as u64
                <= len,
            "validated size"
        );
        Ok(VectorFile {
            path: path.into(),
            map,
            elem,
            n,
            dim,
            data_offset,
            row_stride,
        })
    }

    fn check_counts(path: &Path, n: u64, d: u64) -> Result<()> {
        if n == 0 {
            return Err(LayoutError::field(
                path,
                "n",
                n,
                "the file holds no vectors",
            ));
        }
        if d == 0 {
            return Err(LayoutError::field(
                path,
                "d",
                d,
                "dimension must be at least 1",
            ));
        }
        if d > MAX_DIM as u64 {
            return Err(LayoutError::field(
                path,
                "d",
                d,
                format!("dimension above the supported maximum {MAX_DIM}"),
            ));
        }
        Ok(())
    }

    fn parse_bin(
        path: &Path,
        bytes: &[u8],
        elem: ElementType,
    ) -> Result<(ElementType, usize, usize, usize, usize)> {
        let len = bytes.len() as u64;
        if len < 8 {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: 8,
                actual_bytes: len,
                detail: "the 8-byte header (u32 n, u32 d)".into(),
            });
        }
        let n = u64::from(read_u32_at(bytes, 0));
        let d = u64::from(read_u32_at(bytes, 4));
        Self::check_counts(path, n, d)?;
        let row = d * elem.size_bytes() as u64;
        let expected = n
            .checked_mul(row)
            .and_then(|x| x.checked_add(8))
            .ok_or_else(|| LayoutError::field(path, "n", n, "n × d overflows"))?;
        if expected != len {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: expected,
                actual_bytes: len,
                detail: format!("header n = {n}, d = {d} ({})", elem.name()),
            });
        }
        Ok((elem, n as usize, d as usize, 8, row as usize))
    }

    fn parse_vecs(
        path: &Path,
        bytes: &[u8],
        elem: ElementType,
    ) -> Result<(ElementType, usize, usize, usize, usize)> {
        let len = bytes.len() as u64;
        if len < 4 {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: 4,
                actual_bytes: len,
                detail: "the first row's i32 dimension".into(),
            });
        }
        let d = read_u32_at(bytes, 0) as i32;
        if d <= 0 || d as usize > MAX_DIM {
            return Err(LayoutError::field(
                path,
                "d (row 0)",
                d,
                format!("dimension must be in 1..={MAX_DIM}"),
            ));
        }
        let stride = 4 + d as u64 * elem.size_bytes() as u64;
        if !len.is_multiple_of(stride) {
            return Err(LayoutError::SizeMismatch {
                path: path.into(),
                expected_bytes: (len / stride + 1) * stride,
                actual_bytes: len,
                detail: format!("rows of 4 + {d} × {} bytes", elem.size_bytes()),
            });
        }
        let n = len / stride;
        for row in 0..n {
            let off = (row * stride) as usize;
            let dr = read_u32_at(bytes, off) as i32;
            if dr != d {
                return Err(LayoutError::InvalidField {
                    path: path.into(),
                    field: "d",
                    value: dr.to_string(),
                    reason: format!("row {row} has dimension {dr} but row 0 has {d}"),
                });
            }
        }
        Ok((elem, n as usize, d as usize, 4, stride as usize))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Number of vectors n.
    pub fn len(&self) -> usize {
        self.n
    }
    /// Always false: an open file holds at least one vector.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Element type.
    pub fn element_type(&self) -> ElementType {
        self.elem
    }
    /// Bytes of vector data (`n × d × element size`), excluding headers.
    pub fn data_bytes(&self) -> u64 {
        self.n as u64 * self.dim as u64 * self.elem.size_bytes() as u64
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Byte offset of row `i`'s values in the file (for readers that `pread` rows instead of
    /// touching the map: a mapped page fault can map a whole large folio, so random access
    /// through the map grows the RSS by far more than the row).
    ///
    /// # Panics
    /// If `i >= n`.
    pub fn row_offset(&self, i: usize) -> u64 {
        assert!(i < self.n, "row {i} out of range (n = {})", self.n);
        self.data_offset as u64 + i as u64 * self.row_stride as u64
    }

    /// Raw little-endian bytes of row `i` (`d × element size` bytes).
    ///
    /// # Panics
    /// If `i >= n`.
    pub fn row_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.n, "row {i} out of range (n = {})", self.n);
        let off = self.data_offset + i * self.row_stride;
        &self.bytes()[off..off + self.dim * self.elem.size_bytes()]
    }

    /// Row `i` converted to f32 into `out` (length d).
    ///
    /// # Panics
    /// If `i >= n` or `out.len() != d`.
    pub fn row_f32(&self, i: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.dim);
        let b = self.row_bytes(i);
        match self.elem {
            ElementType::F32 => {
                for (o, c) in out.iter_mut().zip(b.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            ElementType::U8 => out.iter_mut().zip(b).for_each(|(o, &x)| *o = f32::from(x)),
            ElementType::I8 => out
                .iter_mut()
                .zip(b)
                .for_each(|(o, &x)| *o = f32::from(x as i8)),
        }
    }

    /// All vectors as one contiguous row-major `n × d` slice of `T` — borrowed from the map
    /// when the file is contiguous and aligned (`.fbin`, `.u8bin`, `.i8bin`, `.npy`), copied
    /// otherwise (`.fvecs`, `.bvecs`, whose rows carry a 4-byte prefix).
    ///
    /// # Errors
    /// [`LayoutError::InvalidArgument`] if `T` is not this file's element type.
    pub fn contiguous<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        if T::TYPE != self.elem {
            return Err(LayoutError::InvalidArgument {
                field: "element type",
                value: T::TYPE.name().into(),
                reason: format!("{} holds {} vectors", self.path.display(), self.elem.name()),
            });
        }
        let row_bytes = self.dim * self.elem.size_bytes();
        if self.row_stride == row_bytes {
            let bytes = &self.bytes()[self.data_offset..self.data_offset + self.n * row_bytes];
            if let Ok(s) = bytemuck::try_cast_slice::<u8, T>(bytes) {
                return Ok(Cow::Borrowed(s));
            }
        }
        let mut out: Vec<T> = vec![T::zeroed(); self.n * self.dim];
        for (i, dst) in out.chunks_exact_mut(self.dim).enumerate() {
            bytemuck::cast_slice_mut::<T, u8>(dst).copy_from_slice(self.row_bytes(i));
        }
        Ok(Cow::Owned(out))
    }

    /// Drops this process's references to the mapped pages (madvise MADV_DONTNEED), so they
    /// leave the RSS while they are not needed; a later access faults them back in from the
    /// file (usually the page cache). A hint: errors are ignored.
    pub fn release_pages(&self) {
        if let Some(map) = self.map.as_ref() {
            // SAFETY: a private, read-only file mapping: DONTNEED only drops the process's
            // page references, and later reads fault the unchanged file contents back in, so
            // every outstanding borrow of the mapped bytes stays valid.
            let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    /// Checks that every value is finite (f32 files; u8/i8 always are).
    ///
    /// # Errors
    /// [`LayoutError::NonFinite`] naming the first bad row and column.
    pub fn check_finite(&self) -> Result<()> {
        if self.elem != ElementType::F32 {
            return Ok(());
        }
        for i in 0..self.n {
            let b = self.row_bytes(i);
            for (j, c) in b.chunks_exact(4).enumerate() {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if !v.is_finite() {
                    return Err(LayoutError::NonFinite {
                        path: self.path.clone(),
                        row: i as u64,
                        column: j as u32,
                        value: v,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Writes `n × d` vectors (row-major `data`) as a big-ann-benchmarks bin file whose element
/// type is `T` (`.fbin` for f32, `.u8bin`, `.i8bin`).
///
/// # Errors
/// [`LayoutError::Io`]; [`LayoutError::InvalidArgument`] if `data.len() != n × d`.
pub fn write_bin<T: Element>(path: impl AsRef<Path>, n: usize, d: usize, data: &[T]) -> Result<()> {
    let path = path.as_ref();
    if data.len() != n * d || n > u32::MAX as usize || d > u32::MAX as usize {
        return Err(LayoutError::InvalidArgument {
            field: "data",
            value: format!("{} values", data.len()),
            reason: format!("expected n × d = {n} × {d}"),
        });
    }
    let f = File::create(path).map_err(|e| LayoutError::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
    let io = |e| LayoutError::io(path, e);
    w.write_all(&(n as u32).to_le_bytes()).map_err(io)?;
    w.write_all(&(d as u32).to_le_bytes()).map_err(io)?;
    w.write_all(bytemuck::cast_slice(data)).map_err(io)?;
    w.flush().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn tmp(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        (dir, p)
    }

    fn fbin(n: u32, d: u32, vals: &[f32]) -> Vec<u8> {
        let mut b = n.to_le_bytes().to_vec();
        b.extend_from_slice(&d.to_le_bytes());
        vals.iter()
            .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        b
    }

    #[test]
    fn fbin_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.fbin");
        let data: Vec<f32> = (0..12).map(|x| x as f32 * 0.5).collect();
        write_bin(&p, 3, 4, &data).unwrap();
        let f = VectorFile::open(&p).unwrap();
        assert_eq!(
            (f.len(), f.dim(), f.element_type()),
            (3, 4, ElementType::F32)
        );
        assert_eq!(&*f.contiguous::<f32>().unwrap(), &data[..]);
        let mut row = vec![0.0; 4];
        f.row_f32(2, &mut row);
        assert_eq!(row, vec![4.0, 4.5, 5.0, 5.5]);
        assert!(matches!(
            f.contiguous::<u8>(),
            Err(LayoutError::InvalidArgument { .. })
        ));
    }

    #[test]
    fn u8bin_and_i8bin() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.u8bin");
        write_bin(&p, 2, 3, &[1u8, 2, 3, 250, 251, 252]).unwrap();
        let f = VectorFile::open(&p).unwrap();
        assert_eq!(f.element_type(), ElementType::U8);
        assert_eq!(f.row_bytes(1), &[250, 251, 252]);
        let p = dir.path().join("a.i8bin");
        write_bin(&p, 1, 3, &[-1i8, 0, 1]).unwrap();
        let f = VectorFile::open(&p).unwrap();
        let mut r = vec![0.0; 3];
        f.row_f32(0, &mut r);
        assert_eq!(r, vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn fvecs_and_bvecs() {
        let mut b = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.0]] {
            b.extend_from_slice(&2i32.to_le_bytes());
            row.iter()
                .for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
        }
        let (_d, p) = tmp("x.fvecs", &b);
        let f = VectorFile::open(&p).unwrap();
        assert_eq!((f.len(), f.dim()), (2, 2));
        assert_eq!(&*f.contiguous::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        let mut bv = Vec::new();
        for row in [[9u8, 8, 7], [6, 5, 4]] {
            bv.extend_from_slice(&3i32.to_le_bytes());
            bv.extend_from_slice(&row);
        }
        let (_d2, p) = tmp("x.bvecs", &bv);
        let f = VectorFile::open(&p).unwrap();
        assert_eq!(&*f.contiguous::<u8>().unwrap(), &[9, 8, 7, 6, 5, 4]);
        // a row with a different dimension
        let mut bad = b.clone();
        bad[12..16].copy_from_slice(&3i32.to_le_bytes());
        let (_d3, p) = tmp("y.fvecs", &bad);
        match VectorFile::open(&p) {
            Err(LayoutError::InvalidField {
                field: "d", reason, ..
            }) => assert!(reason.contains("row 1"), "{reason}"),
            other => panic!("unexpected {:?}", other.err()),
        }
    }

    #[test]
    fn bad_bin_files_name_the_problem() {
        let (_d, p) = tmp("empty.fbin", b"");
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::SizeMismatch {
                actual_bytes: 0,
                ..
            })
        ));
        let (_d, p) = tmp("n0.fbin", &fbin(0, 4, &[]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::InvalidField { field: "n", .. })
        ));
        let (_d, p) = tmp("d0.fbin", &fbin(3, 0, &[]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::InvalidField { field: "d", .. })
        ));
        let (_d, p) = tmp("short.fbin", &fbin(3, 2, &[1.0; 5]));
        match VectorFile::open(&p) {
            Err(
                e @ LayoutError::SizeMismatch {
                    expected_bytes: 32,
                    actual_bytes: 28,
                    ..
                },
            ) => {
                let msg = e.to_string();
                assert!(msg.contains("short.fbin") && msg.contains("n = 3"), "{msg}");
            }
            other => panic!("unexpected {:?}", other.err()),
        }
        let (_d, p) = tmp("long.fbin", &fbin(1, 2, &[1.0; 3]));
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::SizeMismatch {
                expected_bytes: 16,
                actual_bytes: 20,
                ..
            })
        ));
        let (_d, p) = tmp("x.txt", b"hello");
        assert!(matches!(
            VectorFile::open(&p),
            Err(LayoutError::UnsupportedExtension { .. })
        ));
        assert!(matches!(
            VectorFile::open("/nonexistent/a.fbin"),
            Err(LayoutError::Io { .. })
        ));
        let (_d, p) = tmp("huge.fbin", &fbin(u32::MAX, u32::MAX, &[]));
        assert!(VectorFile::open(&p).is_err());
    }

    #[test]
    fn non_finite_names_the_row() {
        let mut vals = vec![0.5f32; 8];
        vals[5] = f32::NAN;
        let (_d, p) = tmp("nan.fbin", &fbin(4, 2, &vals));
        match VectorFile::open(&p).unwrap().check_finite() {
            Err(LayoutError::NonFinite {
                row: 2, column: 1, ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
        vals[5] = f32::INFINITY;
        let (_d, p) = tmp("inf.fbin", &fbin(4, 2, &vals));
        assert!(matches!(
            VectorFile::open(&p).unwrap().check_finite(),
            Err(LayoutError::NonFinite { row: 2, .. })
        ));
    }
}
