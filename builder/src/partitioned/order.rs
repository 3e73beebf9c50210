//! Sector reordering for the partitioned build: the merged graph's lists are read by `pread`
//! from `merged.graph` (fixed-size records, checked whole first) and ordered by
//! [`crate::reorder::block_order_ranked`] with the one-shot build's ranking — a block is
//! filled with its first node's closest unplaced out-neighbours by exact distance in graph
//! space, their rows read by `pread` (a merged list is not sorted by distance: a union of
//! at most R is kept in partition order). The index is written in that order — vectors and
//! PQ codes fetched by `pread`, neighbour ids translated, `labels.bin` holding each slot's
//! input row. RAM: n × 16 bytes (BFS order, permutation, inverse, two flags), not the graph.

use super::graphs::MergedReader;
use super::rows::{Access, Rows};
use super::workdir::MERGED_FILE;
use crate::BuildError;
use ssdann_layout::pq::{PQ_CODES_MAGIC, PQ_FILE_VERSION};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// RAM of [`Ordered`] and of computing it, in bytes, for n points: BFS order, permutation and
/// inverse (4 each), two flags (1 each), and a margin of 2.
pub(crate) fn reorder_bytes(n: usize, _r: usize) -> u64 {
    n as u64 * (4 + 4 + 4 + 2 + 2)
}

/// The merged graph's slot order; lists are read from `merged.graph` when asked for.
pub(crate) struct Ordered {
    r: usize,
    n: usize,
    file: std::fs::File,
    path: PathBuf,
    /// Byte offset of the first record in `merged.graph`.
    body: u64,
    /// `perm[slot]` = input row.
    pub(crate) perm: Vec<u32>,
    /// `inv[row]` = slot.
    pub(crate) inv: Vec<u32>,
}

impl Ordered {
    /// Checks `merged.graph` whole (as [`MergedReader`] does: fields, every degree ≤ R and
    /// neighbour < n, the body checksum) in one streaming pass, then orders it into blocks
    /// of `nodes_per_block` from the medoid, reading lists and `rows`' graph rows by `pread`.
    ///
    /// # Errors
    /// [`BuildError::Layout`] / [`BuildError::Io`] naming the file.
    pub(crate) fn load(
        dir: &Path,
        rows: &Rows<'_>,
        n: usize,
        r: usize,
        nodes_per_block: usize,
    ) -> Result<(Ordered, u32), BuildError> {
        let (mut reader, medoid) = MergedReader::open(dir, n, r)?;
        let mut batch: Vec<Vec<u32>> = vec![Vec::new(); 1 << 12];
        for start in (0..n).step_by(batch.len()) {
            let end = (start + batch.len()).min(n);
            reader.next_lists(&mut batch[..end - start])?;
        }
        reader.finish()?;
        let path = dir.join(MERGED_FILE);
        let file = std::fs::File::open(&path).map_err(|e| BuildError::io(&path, e))?;
        let len = file.metadata().map_err(|e| BuildError::io(&path, e))?.len();
        // the body (n fixed-size records) ends 4 bytes (its checksum) before the file does
        let body_bytes = (n * (1 + r) * 4) as u64;
        let body = len.checked_sub(body_bytes + 4).ok_or_else(|| {
            BuildError::from(ssdann_layout::LayoutError::corrupt(
                &path,
                "length",
                format!("{len} bytes, shorter than {n} records of R = {r}"),
            ))
        })?;
        let mut o = Ordered {
            r,
            n,
            file,
            path,
            body,
            perm: Vec::new(),
            inv: Vec::new(),
        };
        let mut rec = vec![0u8; (1 + r) * 4];
        let gd = rows.graph_dim();
        let metric = rows.graph_metric();
        let (mut me, mut other) = (vec![0f32; gd], vec![0f32; gd]);
        o.perm = crate::reorder::block_order_ranked(
            n,
            medoid,
            nodes_per_block,
            &mut |u, out| o.read_list(u as usize, &mut rec, out),
            &mut |u, cands| {
                rows.graph_f32(u as usize, &mut me, Access::Random)?;
                for c in cands.iter_mut() {
                    rows.graph_f32(c.1 as usize, &mut other, Access::Random)?;
                    c.0 = <f32 as ssdann_layout::Vector>::distance(metric, &me, &other);
                }
                Ok(())
            },
        )?;
        o.inv = crate::reorder::invert(&o.perm);
        Ok((o, medoid))
    }

    /// Row `row`'s list (input rows) into `out`, by `pread` (`rec`: one record's bytes).
    fn read_list(&self, row: usize, rec: &mut [u8], out: &mut Vec<u32>) -> Result<(), BuildError> {
        let at = self.body + (row * (1 + self.r) * 4) as u64;
        self.file
            .read_exact_at(rec, at)
            .map_err(|e| BuildError::io(&self.path, e))?;
        let word = |k: usize| {
            u32::from_le_bytes([rec[4 * k], rec[4 * k + 1], rec[4 * k + 2], rec[4 * k + 3]])
        };
        let degree = word(0) as usize;
        out.clear();
        out.extend((1..=degree.min(self.r)).map(word));
        // checked whole at load; a file changed since is refused, not followed
        if degree > self.r || out.iter().any(|&v| v as usize >= self.n) {
            return Err(ssdann_layout::LayoutError::corrupt(
                &self.path,
                "record",
                format!(
                    "row {row}: degree {degree} (R = {}) or a neighbour ≥ n = {}",
                    self.r, self.n
                ),
            )
            .into());
        }
        Ok(())
    }

    /// Out-neighbours of slot `slot`, in slot ids (`rec`: scratch, resized to one record).
    ///
    /// # Errors
    /// [`BuildError::Io`] / [`BuildError::Layout`] reading `merged.graph`.
    pub(crate) fn list_of_slot(
        &self,
        slot: usize,
        rec: &mut Vec<u8>,
        out: &mut Vec<u32>,
    ) -> Result<(), BuildError> {
        rec.resize((1 + self.r) * 4, 0);
        self.read_list(self.perm[slot] as usize, rec, out)?;
        out.iter_mut().for_each(|v| *v = self.inv[*v as usize]);
        Ok(())
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
