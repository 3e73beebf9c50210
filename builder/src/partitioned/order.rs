//! Sector reordering for the partitioned build: the merged graph is loaded as flat lists
//! (when they fit in the budget), ordered by [`crate::reorder::block_order_by_list`] (list
//! order stands for distance: RobustPrune leaves lists closest first), and the index is
//! written in that order — vectors and PQ codes fetched by `pread`, neighbour ids
//! translated, `labels.bin` holding each slot's input row.

use super::graphs::MergedReader;
use super::rows::Rows;
use crate::BuildError;
use ssdann_layout::pq::{PQ_CODES_MAGIC, PQ_FILE_VERSION};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// RAM of [`Ordered`] and of computing it, in bytes, for n points of degree ≤ R: the flat
/// lists (4R), degrees (2), BFS order, permutation and inverse (4 each), two flags (1 each).
pub(crate) fn reorder_bytes(n: usize, r: usize) -> u64 {
    n as u64 * (4 * r as u64 + 2 + 4 + 4 + 4 + 2)
}

/// The merged graph in RAM and its slot order.
pub(crate) struct Ordered {
    r: usize,
    flat: Vec<u32>,
    degree: Vec<u16>,
    /// `perm[slot]` = input row.
    pub(crate) perm: Vec<u32>,
    /// `inv[row]` = slot.
    pub(crate) inv: Vec<u32>,
}

impl Ordered {
    /// Reads `merged.graph` (checked as [`MergedReader`] checks it) and orders it into blocks
    /// of `nodes_per_block` from `medoid`.
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming the file.
    pub(crate) fn load(
        dir: &Path,
        n: usize,
        r: usize,
        nodes_per_block: usize,
    ) -> Result<(Ordered, u32), BuildError> {
        let (mut reader, medoid) = MergedReader::open(dir, n, r)?;
        let mut flat = vec![0u32; n * r];
        let mut degree = vec![0u16; n];
        let mut batch: Vec<Vec<u32>> = vec![Vec::new(); 1 << 14];
        for start in (0..n).step_by(batch.len()) {
            let end = (start + batch.len()).min(n);
            reader.next_lists(&mut batch[..end - start])?;
            for (k, list) in batch[..end - start].iter().enumerate() {
                let i = start + k;
                flat[i * r..i * r + list.len()].copy_from_slice(list);
                degree[i] = list.len() as u16;
            }
        }
        reader.finish()?;
        let perm = {
            let (flat, degree) = (&flat, &degree);
            crate::reorder::block_order_by_list(n, medoid, nodes_per_block, &|u| {
                let u = u as usize;
                &flat[u * r..u * r + degree[u] as usize]
            })
        };
        let inv = crate::reorder::invert(&perm);
        Ok((
            Ordered {
                r,
                flat,
                degree,
                perm,
                inv,
            },
            medoid,
        ))
    }

    /// Out-neighbours of slot `slot`, in slot ids.
    pub(crate) fn list_of_slot(&self, slot: usize, out: &mut Vec<u32>) {
        let row = self.perm[slot] as usize;
        out.clear();
        out.extend(
            self.flat[row * self.r..row * self.r + self.degree[row] as usize]
                .iter()
                .map(|&v| self.inv[v as usize]),
        );
    }
}

/// Row `i`'s stored bytes by `pread` (`out`: d × element size): the input bytes, normalized
/// first for cosine.
///
/// # Errors
/// [`BuildError::Io`].
pub(crate) fn stored_bytes_read(
    rows: &Rows<'_>,
    i: usize,
    out: &mut [u8],
    scratch: &mut [f32],
) -> Result<(), BuildError> {
    if rows.metric == ssdann_layout::Metric::Cosine {
        rows.stored(i, scratch, super::rows::Access::Random)?;
        out.copy_from_slice(bytemuck::cast_slice(&scratch[..rows.dim]));
        return Ok(());
    }
    rows.read_bytes(i, out)
}

/// Writes `pq_codes.bin` in slot order from the input-order codes file `src` (codes fetched
/// by `pread`), fsynced (site `build.pq_codes`).
///
/// # Errors
/// [`BuildError::Io`] / [`BuildError::Layout`] naming the file.
pub(crate) fn write_permuted_codes(
    storage: &ssdann_layout::storage::StorageRef,
    src: &Path,
    dst: &Path,
    perm: &[u32],
    m: usize,
) -> Result<(), BuildError> {
    let n = perm.len();
    let r = ssdann_layout::blob::BlobReader::open(src, &PQ_CODES_MAGIC, PQ_FILE_VERSION)?;
    if r.fields.len() < 2
        || r.fields[0] != n as u64
        || r.fields[1] != m as u64
        || r.body_bytes != (n * m) as u64
    {
        return Err(ssdann_layout::LayoutError::corrupt(
            src,
            "fields",
            format!("{:?}, expected [n = {n}, M = {m}]", r.fields),
        )
        .into());
    }
    let body = ssdann_layout::blob::body_offset(r.fields.len());
    // Check the body's CRC before any code is used.
    let mut r = r;
    let mut buf = vec![0u8; 1 << 20];
    while r.remaining() > 0 {
        let k = (r.remaining() as usize).min(buf.len());
        r.read(&mut buf[..k])?;
    }
    r.finish()?;
    let f = std::fs::File::open(src).map_err(|e| BuildError::io(src, e))?;
    let mut w = ssdann_layout::blob::BlobWriter::create_via(
        storage,
        "build.pq_codes",
        dst,
        &PQ_CODES_MAGIC,
        PQ_FILE_VERSION,
        &[n as u64, m as u64],
        (n * m) as u64,
    )?;
    buf.clear();
    for chunk in perm.chunks(1 << 16) {
        buf.resize(chunk.len() * m, 0);
        for (code, &row) in buf.chunks_exact_mut(m).zip(chunk) {
            f.read_exact_at(code, body + row as u64 * m as u64)
                .map_err(|e| BuildError::io(src, e))?;
        }
        w.write(&buf)?;
    }
    Ok(w.finish()?)
}
