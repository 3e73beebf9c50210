//! Row access for the partitioned build; the input is never loaded whole.
//!
//! - Sequential passes (PQ encoding, assignment, medoid, writing) read the memory map; the
//!   pages they touch are dropped from the RSS whenever the bytes read since the last drop
//!   reach the stage's page allowance, so the mapped input never counts against the budget
//!   beyond that allowance.
//! - Random access (samples, a partition's rows, the merge's candidates) reads rows with
//!   `pread` into a buffer: a page fault in the map can map a whole large folio (measured on
//!   this machine's 6.18 kernel: 536 KB of RSS per random 4-byte touch), so random access
//!   through the map would grow the RSS far past the rows actually read.

use crate::params::GraphPrecision;
use crate::BuildError;
use half::f16;
use ssdann_layout::{ElementType, Metric, Vector, VectorFile};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A vector type the graph of a partition can be built on.
pub(crate) trait GraphElem: Vector + Default {
    /// Converts one f32 row (whose values this type represents: integers for u8/i8).
    fn convert(src: &[f32], dst: &mut [Self]);
}

impl GraphElem for f32 {
    fn convert(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }
}
impl GraphElem for f16 {
    fn convert(src: &[f32], dst: &mut [f16]) {
        ssdann_layout::distance::f32_to_f16(src, dst);
    }
}
impl GraphElem for u8 {
    fn convert(src: &[f32], dst: &mut [u8]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as u8);
    }
}
impl GraphElem for i8 {
    fn convert(src: &[f32], dst: &mut [i8]) {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s as i8);
    }
}

/// The element type the graph is built on, as the one-shot build chooses it
/// (`build::GraphSpace`): f16 for f32 data under `GraphPrecision::F16`, f32 for inner
/// product on integer data or f32 precision asked for, the input type otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GraphType {
    F16,
    F32,
    U8,
    I8,
}

impl GraphType {
    pub(crate) fn bytes(self) -> usize {
        match self {
            GraphType::F16 => 2,
            GraphType::F32 => 4,
            GraphType::U8 | GraphType::I8 => 1,
        }
    }
}

/// The graph's element type for input `elem` under `params` (see [`GraphType`]).
pub(crate) fn graph_type(elem: ElementType, params: &crate::BuildParams) -> GraphType {
    let half = elem == ElementType::F32 && params.graph_precision == GraphPrecision::F16;
    match (params.metric, elem) {
        _ if half => GraphType::F16,
        (Metric::InnerProduct, _) | (_, ElementType::F32) => GraphType::F32,
        (_, ElementType::U8) => GraphType::U8,
        (_, ElementType::I8) => GraphType::I8,
    }
}

/// How a pass reads rows: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Through the map, in row order.
    Sequential,
    /// By `pread`, in any order.
    Random,
}

/// The input file seen as stored rows (normalized for cosine) and graph rows (stored rows,
/// extended by one coordinate for inner product: the MIPS-to-L2 reduction of the one-shot
/// build).
pub(crate) struct Rows<'a> {
    pub(crate) file: &'a VectorFile,
    /// The same file, for `pread` of random rows.
    handle: std::fs::File,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    /// Largest squared norm (inner product only; 0 otherwise).
    pub(crate) max_norm_sq: f32,
    pub(crate) graph_type: GraphType,
    /// Mapped bytes read since the pages were last dropped.
    touched: AtomicU64,
    /// Drop the pages when `touched` reaches this many bytes.
    allowance: u64,
}

impl<'a> Rows<'a> {
    /// Wraps `file`; for inner product, one pass finds the largest norm. `page_allowance` is
    /// the mapped-page RSS a stage may hold before the pages are dropped.
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming the row and column of a NaN or infinite value met in
    /// that pass.
    pub(crate) fn new(
        file: &'a VectorFile,
        metric: Metric,
        precision: GraphPrecision,
        page_allowance: u64,
    ) -> Result<Rows<'a>, BuildError> {
        let elem = file.element_type();
        let half = elem == ElementType::F32 && precision == GraphPrecision::F16;
        let graph_type = match (metric, elem) {
            _ if half => GraphType::F16,
            (Metric::InnerProduct, _) | (_, ElementType::F32) => GraphType::F32,
            (_, ElementType::U8) => GraphType::U8,
            (_, ElementType::I8) => GraphType::I8,
        };
        let handle =
            std::fs::File::open(file.path()).map_err(|e| BuildError::io(file.path(), e))?;
        let mut rows = Rows {
            file,
            handle,
            dim: file.dim(),
            metric,
            max_norm_sq: 0.0,
            graph_type,
            touched: AtomicU64::new(0),
            allowance: page_allowance.max(1 << 20),
        };
        if metric == Metric::InnerProduct {
            use rayon::prelude::*;
            let d = rows.dim;
            let max = (0..file.len())
                .into_par_iter()
                .with_min_len(4096)
                .map_init(
                    || vec![0f32; d],
                    |buf, i| {
                        rows.file.row_f32(i, buf);
                        rows.touch((d * rows.file.element_type().size_bytes()) as u64);
                        buf.iter().map(|x| x * x).sum::<f32>()
                    },
                )
                .reduce(|| 0.0, f32::max);
            rows.max_norm_sq = max;
            file.release_pages();
        }
        Ok(rows)
    }

    /// Dimension of graph rows (d, or d + 1 for inner product).
    pub(crate) fn graph_dim(&self) -> usize {
        self.dim + usize::from(self.metric == Metric::InnerProduct)
    }

    /// The metric the graph ranks by (inner product is built as L2 on the extended rows).
    pub(crate) fn graph_metric(&self) -> Metric {
        if self.metric == Metric::InnerProduct {
            Metric::L2
        } else {
            self.metric
        }
    }

    /// Counts `bytes` read from the map and drops the mapped pages when the allowance is
    /// reached (they fault back in from the page cache when read again).
    fn touch(&self, bytes: u64) {
        let t = self.touched.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if t >= self.allowance {
            self.touched.store(0, Ordering::Relaxed);
            self.file.release_pages();
        }
    }

    /// Row `i` as f32 into `out[..d]`, from the map (sequential passes) or by `pread`
    /// (random access).
    pub(crate) fn raw(&self, i: usize, out: &mut [f32], access: Access) -> Result<(), BuildError> {
        let d = self.dim;
        match access {
            Access::Sequential => {
                self.file.row_f32(i, &mut out[..d]);
                self.touch((d * self.file.element_type().size_bytes()) as u64);
            }
            Access::Random => {
                let eb = self.file.element_type().size_bytes();
                let mut bytes = [0u8; 4096];
                let mut heap;
                let buf: &mut [u8] = if d * eb <= bytes.len() {
                    &mut bytes[..d * eb]
                } else {
                    heap = vec![0u8; d * eb];
                    &mut heap
                };
                self.handle
                    .read_exact_at(buf, self.file.row_offset(i))
                    .map_err(|e| BuildError::io(self.file.path(), e))?;
                match self.file.element_type() {
                    ElementType::F32 => out[..d]
                        .iter_mut()
                        .zip(buf.chunks_exact(4))
                        .for_each(|(o, c)| *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    ElementType::U8 => out[..d]
                        .iter_mut()
                        .zip(buf.iter())
                        .for_each(|(o, &x)| *o = f32::from(x)),
                    ElementType::I8 => out[..d]
                        .iter_mut()
                        .zip(buf.iter())
                        .for_each(|(o, &x)| *o = f32::from(x as i8)),
                }
            }
        }
        Ok(())
    }

    /// Row `i`'s input bytes by `pread` (`out`: d × element size).
    ///
    /// # Errors
    /// [`BuildError::Io`].
    pub(crate) fn read_bytes(&self, i: usize, out: &mut [u8]) -> Result<(), BuildError> {
        self.handle
            .read_exact_at(out, self.file.row_offset(i))
            .map_err(|e| BuildError::io(self.file.path(), e))
    }

    /// Row `i` as stored in the index, as f32 (normalized for cosine).
    ///
    /// # Errors
    /// [`BuildError::Io`] when a `pread` fails.
    pub(crate) fn stored(
        &self,
        i: usize,
        out: &mut [f32],
        access: Access,
    ) -> Result<(), BuildError> {
        self.raw(i, out, access)?;
        self.normalize_if_cosine(out);
        Ok(())
    }

    /// Row `i` as stored in the index, as its little-endian bytes (`out`: d × element size),
    /// from the map (the writer's sequential pass).
    pub(crate) fn stored_bytes(&self, i: usize, out: &mut [u8], scratch: &mut [f32]) {
        if self.metric == Metric::Cosine {
            self.file.row_f32(i, &mut scratch[..self.dim]);
            ssdann_layout::distance::normalize(&mut scratch[..self.dim]);
            out.copy_from_slice(bytemuck::cast_slice(&scratch[..self.dim]));
        } else {
            out.copy_from_slice(self.file.row_bytes(i));
        }
        self.touch(out.len() as u64);
    }

    /// Row `i` in graph space as f32 (`out`: [`Rows::graph_dim`] values).
    ///
    /// # Errors
    /// [`BuildError::Io`] when a `pread` fails.
    pub(crate) fn graph_f32(
        &self,
        i: usize,
        out: &mut [f32],
        access: Access,
    ) -> Result<(), BuildError> {
        self.stored(i, out, access)?;
        self.extend(out);
        Ok(())
    }

    /// Row `i` in graph space as f32, from the map (sequential passes; cannot fail).
    pub(crate) fn graph_f32_mapped(&self, i: usize, out: &mut [f32]) {
        self.file.row_f32(i, &mut out[..self.dim]);
        self.touch((self.dim * self.file.element_type().size_bytes()) as u64);
        self.normalize_if_cosine(out);
        self.extend(out);
    }

    /// Normalizes a raw row for cosine (the stored form); other metrics store rows as given.
    pub(crate) fn normalize_if_cosine(&self, out: &mut [f32]) {
        if self.metric == Metric::Cosine {
            ssdann_layout::distance::normalize(&mut out[..self.dim]);
        }
    }

    /// The MIPS-to-L2 coordinate for inner product.
    fn extend(&self, out: &mut [f32]) {
        if self.metric == Metric::InnerProduct {
            let norm: f32 = out[..self.dim].iter().map(|x| x * x).sum();
            out[self.dim] = (self.max_norm_sq - norm).max(0.0).sqrt();
        }
    }

    /// Row `i` in graph space, converted to `V`, read by `pread`.
    ///
    /// # Errors
    /// [`BuildError::Io`] when the `pread` fails.
    pub(crate) fn graph_row<V: GraphElem>(
        &self,
        i: usize,
        out: &mut [V],
        scratch: &mut [f32],
    ) -> Result<(), BuildError> {
        let gd = self.graph_dim();
        self.graph_f32(i, &mut scratch[..gd], Access::Random)?;
        V::convert(&scratch[..gd], &mut out[..gd]);
        Ok(())
    }

    /// Checks row `i` for NaN/inf (f32 input).
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming the file, row and column.
    pub(crate) fn check_finite(&self, i: usize, row: &[f32]) -> Result<(), BuildError> {
        match row[..self.dim].iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(col) => Err(ssdann_layout::LayoutError::NonFinite {
                path: self.file.path().into(),
                row: i as u64,
                column: col as u32,
                value: row[col],
            }
            .into()),
        }
    }
}
