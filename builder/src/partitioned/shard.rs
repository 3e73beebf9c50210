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

/// Runs k-means on a sample of `sample_rows` rows (at most [`PARTITION_SAMPLE`]; the
/// budget sizes it, [`super::budget::Shape::partition_sample`]) for growing C until the largest partition estimated from the
/// sample (each sample point in its [`OVERLAP`] nearest, scaled to n) is at most 90% of
/// `cap`; gives up growing after 12 tries (the assignment's capacity rule then spills).
pub(crate) fn choose_partitions(
    rows: &Rows<'_>,
    n: usize,
    cap: usize,
    sample_rows: usize,
    seed: u64,
) -> Result<Centroids, BuildError> {
    let gd = rows.graph_dim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5a5a_0f0f);
    let ns = n.min(PARTITION_SAMPLE).min(sample_rows).max(1);
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

/// Partition preferences kept per point in a chunk; a point whose first [`PREFS`] are all
/// full has its whole order computed again (rare: only spills go past the first few).
const PREFS: usize = 8;

/// Assigns every point to its [`OVERLAP`] nearest partitions that still have room (at most
/// `cap` points each; a full partition passes the point to its next nearest), writing
/// `part-XXXX.ids` into `dir` and the centroids to `partitions.bin.tmp`. Returns the
/// partition sizes.
///
/// # Allocates
/// Per chunk of points [`PREFS`] preferences each: at most half of `buffer_bytes` (at least
/// 1024 points per chunk); one [`FileWriter`] per partition, each gathering at most
/// min(4 × its points, 1 MiB) bytes.
///
/// # Errors
/// [`BuildError::Io`] naming the file.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assign(
    storage: &StorageRef,
    rows: &Rows<'_>,
    n: usize,
    centroids: &Centroids,
    cap: usize,
    dir: &Path,
    buffer_bytes: u64,
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
    let prefs_k = PREFS.min(c);
    let chunk = ((buffer_bytes / 2 / (4 * prefs_k as u64)) as usize).clamp(1024, CHUNK);
    let mut sizes = vec![0usize; c];
    let mut order = vec![0u32; chunk * prefs_k];
    let mut row = vec![0f32; gd];
    let mut d = vec![0f32; c];
    progress.start(Phase::Partition, n as u64);
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        order[..(end - start) * prefs_k]
            .par_chunks_mut(prefs_k)
            .enumerate()
            .for_each_init(
                || (vec![0f32; gd], vec![0f32; c]),
                |(row, d), (k, out)| {
                    rows.graph_f32_mapped(start + k, row);
                    l2_to_all(row, &centroids.transposed, d);
                    for (o, p) in out.iter_mut().zip(nearest(d, prefs_k)) {
                        *o = p as u32;
                    }
                },
            );
        for (k, prefs) in order[..(end - start) * prefs_k]
            .chunks_exact(prefs_k)
            .enumerate()
        {
            let id = (start + k) as u32;
            let mut joined = 0;
            let want = OVERLAP.min(c);
            for &p in prefs {
                if joined == want {
                    break;
                }
                let p = p as usize;
                if sizes[p] < cap {
                    sizes[p] += 1;
                    joined += 1;
                    writers[p].write(&id.to_le_bytes())?;
                }
            }
            if joined < want && prefs_k < c {
                // Every kept preference is full: the rest of this point's order.
                rows.graph_f32_mapped(start + k, &mut row);
                l2_to_all(&row, &centroids.transposed, &mut d);
                for p in nearest(&d, c).into_iter().skip(prefs_k) {
                    if joined == want {
                        break;
                    }
                    if sizes[p] < cap {
                        sizes[p] += 1;
                        joined += 1;
                        writers[p].write(&id.to_le_bytes())?;
                    }
                }
            }
        }
        progress.advance((end - start) as u64);
    }
    progress.finish();
    drop(order);
    for w in writers {
        // A scratch file read back at once: no fsync (a crash restarts the stage).
        w.finish_unsynced()?;
    }
    for (p, &size) in sizes.iter().enumerate() {
        let bytes = std::fs::read(raw(p)).map_err(|e| BuildError::io(raw(p), e))?;
        write_u32_blob(storage, &ids_path(dir, p), &[size as u64], &bytes)?;
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
