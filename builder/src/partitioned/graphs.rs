//! Per-partition Vamana graphs and their merge (DiskANN, NeurIPS 2019, §4.3): each
//! partition's graph is built in RAM on its own points only (gathered row by row from the
//! mapped input), its edges translated to input row ids and written to `part-XXXX.graph`;
//! then the graphs are merged by streaming all partition files in row order — a point's
//! out-edges are the union of its lists in the (≤ 2) partitions that hold it, RobustPruned
//! back to R when the union is longer — into `merged.graph`, holding one chunk of rows at a
//! time.

use super::budget::MergePlan;
use super::rows::{GraphElem, Rows};
use super::workdir::{
    blob_writer, commit, graph_path, ids_path, read_ids, GRAPH_MAGIC, MERGED_FILE,
};
use crate::progress::{Phase, Progress};
use crate::robust_prune::{robust_prune, saturate, PruneScratch, DEFAULT_MAX_CANDIDATES};
use crate::vamana::{build_vamana, VamanaParams};
use crate::BuildError;
use rayon::prelude::*;
use ssdann_layout::blob::{body_offset, BlobReader};
use ssdann_layout::storage::StorageRef;
use std::path::Path;

/// A padding neighbour slot.
const NONE: u32 = u32::MAX;

/// Builds partition `p`'s graph on graph rows of type `V` and writes `part-XXXX.graph`.
/// Returns the wall time of its two passes.
///
/// # Errors
/// [`BuildError::Layout`] / [`BuildError::Io`] naming the file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_partition<V: GraphElem>(
    storage: &StorageRef,
    rows: &Rows<'_>,
    n: usize,
    dir: &Path,
    p: usize,
    vp: &VamanaParams,
    progress: &dyn Progress,
    before_commit: &dyn Fn() -> Result<(), BuildError>,
) -> Result<[std::time::Duration; 2], BuildError> {
    let ids = read_ids(&ids_path(dir, p), n)?;
    let gd = rows.graph_dim();
    let mut vectors = vec![V::default(); ids.len() * gd];
    vectors
        .par_chunks_mut(gd)
        .zip(ids.par_iter())
        .try_for_each_init(
            || vec![0f32; gd],
            |scratch, (out, &i)| rows.graph_row(i as usize, out, scratch),
        )?;
    rows.file.release_pages();
    // k-means can leave a partition that no point chose: an empty graph.
    let graph = if ids.is_empty() {
        crate::vamana::Graph {
            adjacency: Vec::new(),
            medoid: 0,
            pass_times: [std::time::Duration::ZERO; 2],
        }
    } else {
        build_vamana(&vectors, gd, rows.graph_metric(), vp, progress)
    };
    drop(vectors);
    let r = vp.max_degree;
    let path = graph_path(dir, p);
    let (mut w, tmp) = blob_writer(
        storage,
        "partitioned.graph",
        &path,
        &GRAPH_MAGIC,
        &[ids.len() as u64, r as u64],
        (ids.len() * (1 + r) * 4) as u64,
    )?;
    let mut rec = Vec::with_capacity((1 + r) * 4 * 1024);
    for lists in graph.adjacency.chunks(1024) {
        rec.clear();
        for list in lists {
            rec.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for k in 0..r {
                let v = list.get(k).map_or(NONE, |&l| ids[l as usize]);
                rec.extend_from_slice(&v.to_le_bytes());
            }
        }
        w.write(&rec)?;
    }
    w.finish()?;
    before_commit()?;
    commit(storage, &tmp, &path)?;
    Ok(graph.pass_times)
}

/// Decodes one `(1 + R)`-word record: (degree as stored, its first min(degree, R) ids).
fn decode_record(rec: &[u8], r: usize) -> (usize, Vec<u32>) {
    let word =
        |k: usize| u32::from_le_bytes([rec[4 * k], rec[4 * k + 1], rec[4 * k + 2], rec[4 * k + 3]]);
    let degree = word(0) as usize;
    (degree, (1..=degree.min(r)).map(word).collect())
}

/// Checks partition `p`'s id and graph files whole, one at a time, before the merge reads
/// them in pieces: the ids ([`read_ids`]: checksum, ascending, < n), the graph's fields
/// against them and R, and the graph body's checksum. Returns its number of points.
///
/// # Errors
/// [`BuildError::Layout`] naming the damaged file; [`BuildError::Io`].
fn check_partition(dir: &Path, p: usize, n: usize, r: usize) -> Result<usize, BuildError> {
    let count = read_ids(&ids_path(dir, p), n)?.len();
    let path = graph_path(dir, p);
    let mut graph = BlobReader::open(&path, &GRAPH_MAGIC, 1)?;
    if graph.fields != [count as u64, r as u64] || graph.body_bytes != (count * (1 + r) * 4) as u64
    {
        return Err(ssdann_layout::LayoutError::corrupt(
            &path,
            "fields",
            format!("{:?} for {count} ids and R = {r}", graph.fields),
        )
        .into());
    }
    let mut piece = vec![0u8; (graph.body_bytes as usize).min(1 << 20)];
    while graph.remaining() > 0 {
        let k = (graph.remaining() as usize).min(piece.len());
        graph.read(&mut piece[..k])?;
    }
    graph.finish()?;
    Ok(count)
}

/// One partition's ids and graph records, read in row order by `pread`, a bounded number
/// of each per refill (the files were checked whole first: [`check_partition`]).
struct Stream {
    ids: std::fs::File,
    graph: std::fs::File,
    /// Records not yet read into the buffers.
    left: usize,
    /// Records (and ids) read so far.
    read: usize,
    /// Buffered ids, little-endian, and their records.
    id_buf: Vec<u8>,
    rec_buf: Vec<u8>,
    /// Next buffered entry.
    pos: usize,
    /// Entries per refill.
    per_read: usize,
    /// Records merged.
    next: usize,
    count: usize,
}

impl Stream {
    fn open(dir: &Path, p: usize, count: usize, per_read: usize) -> Result<Stream, BuildError> {
        let open = |path: &Path| std::fs::File::open(path).map_err(|e| BuildError::io(path, e));
        Ok(Stream {
            ids: open(&ids_path(dir, p))?,
            graph: open(&graph_path(dir, p))?,
            left: count,
            read: 0,
            id_buf: Vec::new(),
            rec_buf: Vec::new(),
            pos: 0,
            per_read,
            next: 0,
            count,
        })
    }

    /// Reads the next record (its list) when its row is `< end`.
    fn take_below(
        &mut self,
        end: usize,
        r: usize,
        dir: &Path,
        p: usize,
    ) -> Result<Option<(u32, Vec<u32>)>, BuildError> {
        use std::os::unix::fs::FileExt;
        let rec = (1 + r) * 4;
        if self.pos * 4 == self.id_buf.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let k = self.per_read.min(self.left);
            self.id_buf.resize(k * 4, 0);
            self.rec_buf.resize(k * rec, 0);
            let ids_at = body_offset(1) + (self.read * 4) as u64;
            let graph_at = body_offset(2) + (self.read * rec) as u64;
            let ids = ids_path(dir, p);
            self.ids
                .read_exact_at(&mut self.id_buf, ids_at)
                .map_err(|e| BuildError::io(&ids, e))?;
            let path = graph_path(dir, p);
            self.graph
                .read_exact_at(&mut self.rec_buf, graph_at)
                .map_err(|e| BuildError::io(&path, e))?;
            self.read += k;
            self.left -= k;
            self.pos = 0;
        }
        let b = &self.id_buf[self.pos * 4..self.pos * 4 + 4];
        let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if id as usize >= end {
            return Ok(None);
        }
        let (degree, list) = decode_record(&self.rec_buf[self.pos * rec..(self.pos + 1) * rec], r);
        self.pos += 1;
        self.next += 1;
        if degree > r {
            return Err(ssdann_layout::LayoutError::corrupt(
                graph_path(dir, p),
                "degree",
                format!("row {id}: degree {degree} > R = {r}"),
            )
            .into());
        }
        Ok(Some((id, list)))
    }
}

/// Merges the `parts` partition graphs into `merged.graph`: per row, the union of its lists,
/// RobustPruned (α = `alpha`, on graph rows of type `V`) to R when longer, then saturated
/// to R when `saturate` and α > 1 (as the one-shot build's second pass does: a merged list
/// would otherwise lose the fill its partitions gave it). Returns the mean degree.
///
/// # Allocates
/// `plan.records_per_read` ids and records per partition and `plan.chunk_rows` lists and
/// records ([`super::budget::Shape::merge_plan`]); each partition's ids once while it is
/// checked.
///
/// # Errors
/// [`BuildError::Layout`] naming a partition file that is damaged (checksum, a degree > R, a
/// neighbour ≥ n) and [`BuildError::Io`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn merge_graphs<V: GraphElem>(
    storage: &StorageRef,
    rows: &Rows<'_>,
    n: usize,
    dir: &Path,
    parts: usize,
    r: usize,
    alpha: f32,
    saturate_lists: bool,
    medoid: u32,
    plan: MergePlan,
    progress: &dyn Progress,
    before_commit: &dyn Fn() -> Result<(), BuildError>,
) -> Result<f64, BuildError> {
    let mut streams = Vec::with_capacity(parts);
    for p in 0..parts {
        let count = check_partition(dir, p, n, r)?;
        streams.push(Stream::open(dir, p, count, plan.records_per_read)?);
    }
    let out = dir.join(MERGED_FILE);
    let (mut w, tmp) = blob_writer(
        storage,
        "partitioned.merged",
        &out,
        &GRAPH_MAGIC,
        &[n as u64, r as u64, u64::from(medoid)],
        (n * (1 + r) * 4) as u64,
    )?;
    let gd = rows.graph_dim();
    let metric = rows.graph_metric();
    let mut edges = 0u64;
    progress.start(Phase::GraphMerge, n as u64);
    let chunk = plan.chunk_rows.max(1);
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); chunk.min(n)];
    let mut rec = Vec::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        lists[..end - start].iter_mut().for_each(Vec::clear);
        for (p, s) in streams.iter_mut().enumerate() {
            while let Some((id, list)) = s.take_below(end, r, dir, p)? {
                if let Some(&bad) = list.iter().find(|&&v| v as usize >= n) {
                    return Err(ssdann_layout::LayoutError::corrupt(
                        graph_path(dir, p),
                        "neighbour",
                        format!("row {id}: neighbour {bad} ≥ n = {n}"),
                    )
                    .into());
                }
                let l = &mut lists[id as usize - start];
                for v in list {
                    if !l.contains(&v) && v != id {
                        l.push(v);
                    }
                }
            }
        }
        lists[..end - start]
            .par_iter_mut()
            .enumerate()
            .try_for_each_init(
                || {
                    (
                        PruneScratch::default(),
                        vec![0f32; gd],
                        Vec::<V>::new(),
                        Vec::new(),
                    )
                },
                |(prune, scratch, local, out), (k, list)| {
                    if list.len() <= r {
                        return Ok::<(), BuildError>(());
                    }
                    // Local ids: 0..c the candidates, c the point itself.
                    let c = list.len();
                    local.resize((c + 1) * gd, V::default());
                    for (j, &v) in list.iter().enumerate() {
                        rows.graph_row(v as usize, &mut local[j * gd..(j + 1) * gd], scratch)?;
                    }
                    rows.graph_row(start + k, &mut local[c * gd..], scratch)?;
                    let me = &local[c * gd..];
                    prune.pool.clear();
                    for j in 0..c {
                        let d = V::distance(metric, me, &local[j * gd..(j + 1) * gd]);
                        prune.pool.push((d, j as u32));
                    }
                    robust_prune(
                        local,
                        gd,
                        metric,
                        c as u32,
                        alpha,
                        r,
                        DEFAULT_MAX_CANDIDATES,
                        prune,
                        out,
                    );
                    if saturate_lists && alpha > 1.0 {
                        saturate(prune, r, out);
                    }
                    let chosen: Vec<u32> = out.iter().map(|&j| list[j as usize]).collect();
                    *list = chosen;
                    Ok(())
                },
            )?;
        rec.clear();
        for list in &lists[..end - start] {
            edges += list.len() as u64;
            rec.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for k in 0..r {
                rec.extend_from_slice(&list.get(k).copied().unwrap_or(NONE).to_le_bytes());
            }
        }
        w.write(&rec)?;
        progress.advance((end - start) as u64);
    }
    progress.finish();
    for (p, s) in streams.into_iter().enumerate() {
        if s.next != s.count {
            return Err(ssdann_layout::LayoutError::corrupt(
                graph_path(dir, p),
                "records",
                format!("{} of {} rows merged", s.next, s.count),
            )
            .into());
        }
    }
    w.finish()?;
    before_commit()?;
    commit(storage, &tmp, &out)?;
    Ok(edges as f64 / n.max(1) as f64)
}

/// Reads `merged.graph` batch by batch for the sector writer.
pub(crate) struct MergedReader {
    reader: BlobReader,
    r: usize,
    n: usize,
    rec: Vec<u8>,
}

impl MergedReader {
    /// Opens `merged.graph`, checking its fields against n and R; returns it and the medoid.
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming the file.
    pub(crate) fn open(dir: &Path, n: usize, r: usize) -> Result<(MergedReader, u32), BuildError> {
        let path = dir.join(MERGED_FILE);
        let reader = BlobReader::open(&path, &GRAPH_MAGIC, 1)?;
        let f = reader.fields.clone();
        if f.len() != 3 || f[0] != n as u64 || f[1] != r as u64 || f[2] >= n as u64 {
            return Err(ssdann_layout::LayoutError::corrupt(
                &path,
                "fields",
                format!("{f:?}, expected [n = {n}, R = {r}, medoid < n]"),
            )
            .into());
        }
        Ok((
            MergedReader {
                reader,
                r,
                n,
                rec: vec![0u8; (1 + r) * 4],
            },
            f[2] as u32,
        ))
    }

    /// Fills `lists` with the next rows' out-neighbours.
    ///
    /// # Errors
    /// [`BuildError::Layout`] on a degree > R or a neighbour ≥ n.
    pub(crate) fn next_lists(&mut self, lists: &mut [Vec<u32>]) -> Result<(), BuildError> {
        for list in lists {
            self.reader.read(&mut self.rec)?;
            let (degree, got) = decode_record(&self.rec, self.r);
            list.clear();
            list.extend_from_slice(&got);
            if degree > self.r || list.iter().any(|&v| v as usize >= self.n) {
                return Err(ssdann_layout::LayoutError::corrupt(
                    MERGED_FILE,
                    "record",
                    format!(
                        "degree {degree} (R = {}) or a neighbour ≥ n = {}",
                        self.r, self.n
                    ),
                )
                .into());
            }
        }
        Ok(())
    }

    /// Checks the body checksum once every row was read.
    ///
    /// # Errors
    /// [`BuildError::Layout`].
    pub(crate) fn finish(self) -> Result<(), BuildError> {
        Ok(self.reader.finish()?)
    }
}
