//! Partitioning (DiskANN, NeurIPS 2019, §4.3 "Indexing large datasets"): k-means on a sample
//! of the graph rows gives C centroids, C chosen so that the partitions estimated from the
//! sample fit the per-partition cap; then every point joins its 2 nearest partitions (the
//! overlap that connects the partition graphs), in one streaming pass over the input, each
//! partition's ids written in ascending order to its own file.

use super::rows::{Access, Rows};
use super::workdir::{ids_path, write_u32_blob, PARTITIONS_MAGIC};
use crate::durable::FileWriter;
use crate::progress::{Phase, Progress};
use crate::BuildError;
use rand::SeedableRng;
use rayon::prelude::*;
use ssdann_layout::pq::l2_to_all;
use ssdann_layout::storage::StorageRef;
use std::path::Path;

/// Each point joins this many partitions (DiskANN's overlap factor).
pub const OVERLAP: usize = 2;
/// Points the partition k-means runs on.
pub const PARTITION_SAMPLE: usize = 100_000;
/// Lloyd iterations of the partition k-means.
pub const PARTITION_ITERS: usize = 10;
/// Points assigned per parallel chunk of the streaming pass.
const CHUNK: usize = 1 << 16;

/// The result of [`choose_partitions`]: C centroids (transposed, gd × C).
pub(crate) struct Centroids {
    pub(crate) count: usize,
    pub(crate) transposed: Vec<f32>,
}

/// Runs k-means on a sample for growing C until the largest partition estimated from the
/// sample (each sample point in its [`OVERLAP`] nearest, scaled to n) is at most 90% of
/// `cap`; gives up growing after 12 tries (the assignment's capacity rule then spills).
pub(crate) fn choose_partitions(
    rows: &Rows<'_>,
    n: usize,
    cap: usize,
    seed: u64,
) -> Result<Centroids, BuildError> {
    let gd = rows.graph_dim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5a5a_0f0f);
    let ns = n.min(PARTITION_SAMPLE);
    let mut ids = if ns == n {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, ns).into_vec()
    };
    ids.sort_unstable();
    let mut sample = vec![0f32; ns * gd];
    sample
        .par_chunks_mut(gd)
        .zip(ids.par_iter())
        .try_for_each(|(out, &i)| rows.graph_f32(i, out, Access::Random))?;
    let mut c = (OVERLAP * n).div_ceil(cap).max(OVERLAP);
    let mut tries = 0;
    loop {
        let ct = crate::kmeans::kmeans_transposed(&sample, gd, c, PARTITION_ITERS, &mut rng);
        let mut counts = vec![0usize; c];
        let mut d = vec![0f32; c];
        for row in sample.chunks_exact(gd) {
            l2_to_all(row, &ct, &mut d);
            for p in nearest(&d, OVERLAP) {
                counts[p] += 1;
            }
        }
        let largest = counts.iter().copied().max().unwrap_or(0) as f64 * n as f64 / ns as f64;
        tries += 1;
        if largest <= 0.9 * cap as f64 || tries >= 12 {
            return Ok(Centroids {
                count: c,
                transposed: ct,
            });
        }
        c = (c as f64 * 1.25).ceil() as usize + 1;
    }
}

/// Indices of the `k` smallest entries of `d`, nearest first, ties by lower index.
fn nearest(d: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..d.len()).collect();
    idx.sort_unstable_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Assigns every point to its [`OVERLAP`] nearest partitions that still have room (at most
/// `cap` points each; a full partition passes the point to its next nearest), writing
/// `part-XXXX.ids` into `dir` and the centroids to `partitions.bin.tmp`. Returns the partition sizes.
///
/// # Errors
/// [`BuildError::Io`] naming the file.
pub(crate) fn assign(
    storage: &StorageRef,
    rows: &Rows<'_>,
    n: usize,
    centroids: &Centroids,
    cap: usize,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<Vec<usize>, BuildError> {
    let c = centroids.count;
    let gd = rows.graph_dim();
    // Raw id lists first (sizes unknown until the end), then each wrapped into a checksummed
    // blob and the raw file removed.
    let raw = |p: usize| dir.join(format!("part-{p:04}.ids.raw"));
    let mut writers = (0..c)
        .map(|p| FileWriter::create(storage, &raw(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sizes = vec![0usize; c];
    progress.start(Phase::Partition, n as u64);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let order: Vec<Vec<usize>> = (start..end)
            .into_par_iter()
            .map_init(
                || (vec![0f32; gd], vec![0f32; c]),
                |(row, d), i| {
                    rows.graph_f32_mapped(i, row);
                    l2_to_all(row, &centroids.transposed, d);
                    nearest(d, c)
                },
            )
            .collect();
        for (k, prefs) in order.iter().enumerate() {
            let id = (start + k) as u32;
            let mut joined = 0;
            for &p in prefs {
                if joined == OVERLAP.min(c) {
                    break;
                }
                if sizes[p] < cap {
                    sizes[p] += 1;
                    joined += 1;
                    writers[p].write(&id.to_le_bytes())?;
                }
            }
        }
        progress.advance((end - start) as u64);
    }
    progress.finish();
    for (p, w) in writers.into_iter().enumerate() {
        // A scratch file read back at once: no fsync (a crash restarts the stage).
        w.finish_unsynced()?;
        let bytes = std::fs::read(raw(p)).map_err(|e| BuildError::io(raw(p), e))?;
        write_u32_blob(storage, &ids_path(dir, p), &[sizes[p] as u64], &bytes)?;
        storage
            .remove(&raw(p))
            .map_err(|e| BuildError::io(raw(p), e))?;
    }
    let mut body = Vec::with_capacity(centroids.transposed.len() * 4);
    centroids
        .transposed
        .iter()
        .for_each(|x| body.extend_from_slice(&x.to_le_bytes()));
    // Written under its temporary name: the caller renames it into place (the stage's mark).
    let tmp = dir.join(format!("{}.tmp", super::workdir::PARTITIONS_FILE));
    let fields = [c as u64, gd as u64];
    let site = "partitioned.partitions";
    ssdann_layout::blob::write_blob_via(storage, site, &tmp, &PARTITIONS_MAGIC, 1, &fields, &body)?;
    Ok(sizes)
}
