//! Per-partition Vamana graphs and their merge (DiskANN, NeurIPS 2019, §4.3): each
//! partition's graph is built in RAM on its own points only (gathered row by row from the
//! mapped input), its edges translated to input row ids and written to `part-XXXX.graph`;
//! then the graphs are merged by streaming all partition files in row order — a point's
//! out-edges are the union of its lists in the (≤ 2) partitions that hold it, RobustPruned
//! back to R when the union is longer — into `merged.graph`, holding one chunk of rows at a
//! time.

use super::rows::{GraphElem, Rows};
use super::workdir::{
    blob_writer, commit, graph_path, ids_path, read_ids, GRAPH_MAGIC, MERGED_FILE,
};
use crate::progress::{Phase, Progress};
use crate::robust_prune::{robust_prune, saturate, PruneScratch, DEFAULT_MAX_CANDIDATES};
use crate::vamana::{build_vamana, VamanaParams};
use crate::BuildError;
use rayon::prelude::*;
use ssdann_layout::blob::BlobReader;
use ssdann_layout::storage::StorageRef;
use std::path::Path;

/// Rows merged per chunk.
const MERGE_CHUNK: usize = 1 << 15;
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

/// One partition's graph file and id list, read in row order.
struct Stream {
    ids: Vec<u32>,
    next: usize,
    graph: BlobReader,
    rec: Vec<u8>,
}

impl Stream {
    /// Reads the next record (its list) when its row is `< end`.
    fn take_below(
        &mut self,
        end: usize,
        r: usize,
        path: &Path,
    ) -> Result<Option<(u32, Vec<u32>)>, BuildError> {
        let Some(&id) = self.ids.get(self.next) else {
            return Ok(None);
        };
        if id as usize >= end {
            return Ok(None);
        }
        self.next += 1;
        self.graph.read(&mut self.rec)?;
        let (degree, list) = decode_record(&self.rec, r);
        if degree > r {
            return Err(ssdann_layout::LayoutError::corrupt(
                path,
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
    progress: &dyn Progress,
    before_commit: &dyn Fn() -> Result<(), BuildError>,
) -> Result<f64, BuildError> {
    let mut streams = Vec::with_capacity(parts);
    for p in 0..parts {
        let ids = read_ids(&ids_path(dir, p), n)?;
        let path = graph_path(dir, p);
        let graph = BlobReader::open(&path, &GRAPH_MAGIC, 1)?;
        if graph.fields != [ids.len() as u64, r as u64]
            || graph.body_bytes != (ids.len() * (1 + r) * 4) as u64
        {
            return Err(ssdann_layout::LayoutError::corrupt(
                &path,
                "fields",
                format!("{:?} for {} ids and R = {r}", graph.fields, ids.len()),
            )
            .into());
        }
        streams.push(Stream {
            ids,
            next: 0,
            graph,
            rec: vec![0u8; (1 + r) * 4],
        });
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
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); MERGE_CHUNK];
    let mut rec = Vec::new();
    for start in (0..n).step_by(MERGE_CHUNK) {
        let end = (start + MERGE_CHUNK).min(n);
        lists[..end - start].iter_mut().for_each(Vec::clear);
        for (p, s) in streams.iter_mut().enumerate() {
            let path = graph_path(dir, p);
            while let Some((id, list)) = s.take_below(end, r, &path)? {
                if let Some(&bad) = list.iter().find(|&&v| v as usize >= n) {
                    return Err(ssdann_layout::LayoutError::corrupt(
                        &path,
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
        if s.next != s.ids.len() {
            return Err(ssdann_layout::LayoutError::corrupt(
                graph_path(dir, p),
                "records",
                format!("{} of {} rows merged", s.next, s.ids.len()),
            )
            .into());
        }
        s.graph.finish()?;
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
