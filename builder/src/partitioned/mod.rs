//! The memory-budgeted, partitioned build (DiskANN, NeurIPS 2019, §4.3): for data whose
//! one-shot build does not fit in `--memory-budget`.
//!
//! Stages, each writing its output into the work directory ([`workdir`]) so that an
//! interrupted build resumes from the last finished one (`--resume`) and each partition is
//! an independent job:
//! 1. **PQ**: train on a sample sized from the budget, encode every point streaming
//!    (`pq_pivots.bin`, `pq_codes.bin`).
//! 2. **Partition** ([`shard`]): k-means on a sample; C sized so every partition fits the
//!    budget; each point joins its 2 nearest partitions (`partitions.bin`, `part-XXXX.ids`).
//! 3. **Partition graphs** ([`graphs`]): a Vamana graph per partition over its own points
//!    only (`part-XXXX.graph`).
//! 4. **Merge**: the union of each point's lists, RobustPruned to R, streamed in row order
//!    (`merged.graph`), from the global medoid.
//! 5. **Write** ([`order`]): when the merged graph fits in the budget, it is loaded and
//!    block-ordered (sector reordering, list order standing for distance) and the index is
//!    written in that order (`labels.bin` maps slots to rows); otherwise the sector file is
//!    streamed from `merged.graph` in input order (`labels.bin` is the identity). Then the
//!    PQ files and the swap into place exactly as the one-shot build does.
//!
//! RAM: one partition's graph at a time plus bounded buffers; the mapped input's pages are
//! dropped whenever a stage has read [`budget::PAGE_ALLOWANCE_FRACTION`] of the budget.

pub mod budget;
pub(crate) mod graphs;
pub(crate) mod order;
pub(crate) mod rows;
pub(crate) mod shard;
pub mod workdir;

use crate::build::{install_output, temp_dir_for, BuildParams, BuildReport, INDEX_FILE};
use crate::pq_train::{self, MAX_TRAINING_SAMPLE};
use crate::progress::{Phase, Progress};
use crate::writer::write_sector_file_from;
use crate::BuildError;
use budget::{min_partition, Shape};
use half::f16;
use rand::SeedableRng;
use rayon::prelude::*;
use rows::{Access, GraphType, Rows};
use ssdann_layout::pq::{PQ_CODES_FILE, PQ_CODES_MAGIC, PQ_FILE_VERSION, PQ_PIVOTS_FILE};
use ssdann_layout::{ElementType, Metric, NodeLayout, PqCodebook, VectorFile};
use std::path::Path;
use std::time::{Duration, Instant};
use workdir::{commit, graph_path, Existing, MERGED_FILE, PARTITIONS_FILE};

/// Test hook: makes the build stop with [`BuildError::Interrupted`] at the named point
/// (`pq`, `partition`, `graph-N`, `merge`, `write`: each after the stage's output is written
/// under its temporary name and before it is renamed into place, as a kill would).
fn interrupt(params: &BuildParams, point: &str) -> Result<(), BuildError> {
    if params.interrupt_at.as_deref() == Some(point) {
        return Err(BuildError::Interrupted {
            stage: point.to_string(),
        });
    }
    Ok(())
}

/// The build's [`Shape`] for `file` under `params` (with `threads` build threads).
pub fn shape_of(file: &VectorFile, params: &BuildParams, threads: usize) -> Shape {
    let elem = file.element_type();
    let graph = rows::graph_type(elem, params);
    let dim = file.dim();
    let m = params
        .pq_bytes
        .unwrap_or_else(|| pq_train::default_pq_m(dim, elem.size_bytes()));
    Shape::new(
        file.len(),
        dim,
        elem.size_bytes(),
        dim + usize::from(params.metric == Metric::InnerProduct),
        graph,
        params.max_degree,
        m,
        threads,
    )
}

/// Runs the partitioned build of `file` into `out_dir` under `budget` bytes (in the current
/// rayon pool; the caller validated `params` and the output path).
///
/// # Errors
/// [`BuildError::BudgetTooSmall`] when one partition of the smallest useful size does not
/// fit; [`BuildError::ResumeMismatch`] when `--resume` finds a work directory made with
/// other inputs; every error of the one-shot build.
pub fn build_partitioned(
    file: &VectorFile,
    out_dir: &Path,
    params: &BuildParams,
    budget: u64,
    progress: &dyn Progress,
) -> Result<BuildReport, BuildError> {
    let n = file.len();
    let dim = file.dim();
    let elem = file.element_type();
    if params.metric == Metric::Cosine && elem != ElementType::F32 {
        return Err(BuildError::param(
            "--metric",
            "cosine",
            format!(
                "cosine needs f32 data; {} holds {}",
                file.path().display(),
                elem
            ),
        ));
    }
    let shape = shape_of(file, params, rayon::current_num_threads());
    let cap = shape.partition_cap(budget);
    let min = min_partition(params.max_degree).min(n);
    if cap < min {
        let mut minimum = budget::FIXED_BYTES
            + ((min as u64 * shape.vamana_bytes_per_point()) as f64 / budget::PARTITION_FRACTION)
                .ceil() as u64;
        // The cap rounds (budget − fixed) × fraction down in f64: step past any rounding so
        // that the minimum named is one that works.
        while shape.partition_cap(minimum) < min {
            minimum += 1;
        }
        return Err(BuildError::BudgetTooSmall {
            budget,
            minimum,
            reason: format!(
                "one partition of {min} points needs {} bytes per point",
                shape.vamana_bytes_per_point()
            ),
        });
    }
    let m = shape.pq_m;
    let allowance = (budget as f64 * budget::PAGE_ALLOWANCE_FRACTION) as u64;
    let rows = Rows::new(file, params.metric, params.graph_precision, allowance)?;

    let dir = workdir::work_dir_for(out_dir)?;
    let meta = std::fs::metadata(file.path()).map_err(|e| BuildError::io(file.path(), e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let manifest = workdir::manifest_text(&[
        (
            "data",
            std::fs::canonicalize(file.path())
                .unwrap_or(file.path().into())
                .display()
                .to_string(),
        ),
        ("data_bytes", meta.len().to_string()),
        ("data_mtime_ns", mtime.to_string()),
        ("n", n.to_string()),
        ("d", dim.to_string()),
        ("element", elem.to_string()),
        ("metric", format!("{:?}", params.metric)),
        ("R", params.max_degree.to_string()),
        ("L", params.build_l.to_string()),
        ("alpha", params.alpha.to_string()),
        ("passes", params.passes.to_string()),
        ("pq_m", m.to_string()),
        ("seed", params.seed.to_string()),
        ("graph_precision", format!("{:?}", params.graph_precision)),
        ("partition_cap", cap.to_string()),
    ]);
    // One build per work directory: an exclusive lock on it, held until the build ends,
    // taken before anything in it is read or removed.
    let mut lock = workdir::lock(&dir)?;
    match workdir::inspect(&dir, &manifest)? {
        Existing::Absent => {}
        Existing::Same if params.resume => {
            progress.message(&format!("resuming the build in {}", dir.display()))
        }
        Existing::Different(field, old, new) if params.resume => {
            return Err(BuildError::ResumeMismatch {
                path: dir,
                field,
                old,
                new,
            })
        }
        _ => workdir::remove(&dir)?,
    }
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
        lock = workdir::lock(&dir)?;
        let tmp = dir.join("MANIFEST.tmp");
        std::fs::write(&tmp, &manifest)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| BuildError::io(&tmp, e))?;
        commit(&tmp, &dir.join(workdir::MANIFEST))?;
    }
    let mut phases: Vec<(Phase, Duration)> = Vec::new();
    let mut peaks: Vec<(Phase, u64)> = Vec::new();

    // 1. PQ.
    let pivots = dir.join(PQ_PIVOTS_FILE);
    let codes = dir.join(PQ_CODES_FILE);
    if !(pivots.exists() && codes.exists()) {
        let t = Instant::now();
        let pq = train_pq_sampled(&rows, &shape, budget, params.seed, progress)?;
        let tmp = dir.join("pq_pivots.bin.tmp");
        pq.write(&tmp)?;
        commit(&tmp, &pivots)?;
        phases.push((Phase::PqTraining, t.elapsed()));
        let t = Instant::now();
        encode_streaming(&rows, &pq, &codes, progress)?;
        interrupt(params, "pq")?;
        commit(&dir.join("pq_codes.bin.tmp"), &codes)?;
        phases.push((Phase::PqEncoding, t.elapsed()));
        note_rss(progress, &mut peaks, Phase::PqEncoding, budget);
    }

    // 2. Partitions.
    let t = Instant::now();
    let parts_path = dir.join(PARTITIONS_FILE);
    if !parts_path.exists() {
        let centroids = if cap >= n {
            shard::Centroids {
                count: 1,
                transposed: vec![0.0; rows.graph_dim()],
            }
        } else {
            shard::choose_partitions(&rows, n, cap, params.seed)?
        };
        let sizes = shard::assign(&rows, n, &centroids, cap, &dir, progress)?;
        interrupt(params, "partition")?;
        commit(&dir.join(format!("{PARTITIONS_FILE}.tmp")), &parts_path)?;
        progress.message(&format!(
            "{} partitions of {}..{} points (cap {cap}, budget {:.2} GiB)",
            sizes.len(),
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0),
            budget as f64 / (1u64 << 30) as f64
        ));
        phases.push((Phase::Partition, t.elapsed()));
        note_rss(progress, &mut peaks, Phase::Partition, budget);
    }
    let parts = ssdann_layout::blob::read_blob_fields(&parts_path, &workdir::PARTITIONS_MAGIC, 1)?
        .1
        .first()
        .copied()
        .unwrap_or(0) as usize;

    // 3. One graph per partition.
    let vp = params.vamana();
    let mut pass = [Duration::ZERO; 2];
    for p in 0..parts {
        if graph_path(&dir, p).exists() {
            continue;
        }
        let size = ssdann_layout::blob::read_blob_fields(
            &workdir::ids_path(&dir, p),
            &workdir::IDS_MAGIC,
            1,
        )?
        .1
        .first()
        .copied()
        .unwrap_or(0);
        progress.message(&format!("partition {}/{parts}: {size} points", p + 1));
        let point = format!("graph-{p}");
        let hook = || interrupt(params, &point);
        let times = match rows.graph_type {
            GraphType::F16 => {
                graphs::build_partition::<f16>(&rows, n, &dir, p, &vp, progress, &hook)
            }
            GraphType::F32 => {
                graphs::build_partition::<f32>(&rows, n, &dir, p, &vp, progress, &hook)
            }
            GraphType::U8 => graphs::build_partition::<u8>(&rows, n, &dir, p, &vp, progress, &hook),
            GraphType::I8 => graphs::build_partition::<i8>(&rows, n, &dir, p, &vp, progress, &hook),
        };
        let times = times?;
        pass[0] += times[0];
        pass[1] += times[1];
    }
    phases.push((Phase::VamanaPass1, pass[0]));
    phases.push((Phase::VamanaPass2, pass[1]));
    note_rss(progress, &mut peaks, Phase::VamanaPass2, budget);

    // 4. Merge.
    let merged = dir.join(MERGED_FILE);
    if !merged.exists() {
        let t = Instant::now();
        let medoid = streaming_medoid(&rows, n);
        let r = params.max_degree;
        let a = params.alpha;
        let hook = || interrupt(params, "merge");
        match rows.graph_type {
            GraphType::F16 => {
                graphs::merge_graphs::<f16>(&rows, n, &dir, parts, r, a, medoid, progress, &hook)
            }
            GraphType::F32 => {
                graphs::merge_graphs::<f32>(&rows, n, &dir, parts, r, a, medoid, progress, &hook)
            }
            GraphType::U8 => {
                graphs::merge_graphs::<u8>(&rows, n, &dir, parts, r, a, medoid, progress, &hook)
            }
            GraphType::I8 => {
                graphs::merge_graphs::<i8>(&rows, n, &dir, parts, r, a, medoid, progress, &hook)
            }
        }?;
        phases.push((Phase::GraphMerge, t.elapsed()));
        note_rss(progress, &mut peaks, Phase::GraphMerge, budget);
    }

    // 5. Write the index: in sector order when the merged graph fits in the budget.
    let t = Instant::now();
    let r = params.max_degree;
    let layout = NodeLayout::new(dim, elem, r)?;
    // Vectors and codes are fetched by pread in this stage: no mapped pages to allow for.
    let need = budget::FIXED_BYTES + order::reorder_bytes(n, r);
    let ordered = if params.reorder && layout.nodes_per_block > 1 && need <= budget {
        progress.start(Phase::Reorder, 1);
        let o = order::Ordered::load(&dir, n, r, layout.nodes_per_block)?;
        progress.advance(1);
        progress.finish();
        phases.push((Phase::Reorder, t.elapsed()));
        note_rss(progress, &mut peaks, Phase::Reorder, budget);
        Some(o)
    } else {
        if params.reorder && layout.nodes_per_block > 1 {
            progress.message(&format!(
                "sector reordering skipped: it needs {} MiB, the budget is {} MiB",
                need >> 20,
                budget >> 20
            ));
        }
        None
    };
    let t = Instant::now();
    let medoid_row = graphs::MergedReader::open(&dir, n, r)?.1;
    let entry = ordered
        .as_ref()
        .map_or(medoid_row, |(o, _)| o.inv[medoid_row as usize]);
    let header = crate::build::new_header(n, elem, params, layout, entry, m);
    let tmp = temp_dir_for(out_dir)?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| BuildError::io(&tmp, e))?;
    let mut edges = 0u64;
    let vb = layout.vector_bytes();
    let labels_path = tmp.join(ssdann_layout::labels::LABELS_FILE);
    if let Some((o, _)) = &ordered {
        write_sector_file_from(
            &tmp.join(INDEX_FILE),
            &header,
            progress,
            &mut |first, vectors, lists| {
                lists
                    .iter_mut()
                    .enumerate()
                    .for_each(|(k, l)| o.list_of_slot(first + k, l));
                edges += lists.iter().map(|l| l.len() as u64).sum::<u64>();
                vectors.par_chunks_mut(vb).enumerate().try_for_each_init(
                    || vec![0f32; dim],
                    |scratch, (k, out)| {
                        order::stored_bytes_read(&rows, o.perm[first + k] as usize, out, scratch)
                    },
                )
            },
        )?;
        order::write_permuted_codes(&codes, &tmp.join(PQ_CODES_FILE), &o.perm, m)?;
        ssdann_layout::labels::write_labels_with(&labels_path, n, |s| u64::from(o.perm[s]))?;
    } else {
        let (mut reader, _) = graphs::MergedReader::open(&dir, n, r)?;
        write_sector_file_from(
            &tmp.join(INDEX_FILE),
            &header,
            progress,
            &mut |first, vectors, lists| {
                reader.next_lists(lists)?;
                edges += lists.iter().map(|l| l.len() as u64).sum::<u64>();
                vectors.par_chunks_mut(vb).enumerate().for_each_init(
                    || vec![0f32; dim],
                    |scratch, (k, out)| rows.stored_bytes(first + k, out, scratch),
                );
                Ok(())
            },
        )?;
        reader.finish()?;
        file.release_pages();
        link_or_copy(&codes, &tmp.join(PQ_CODES_FILE))?;
        ssdann_layout::labels::write_labels_with(&labels_path, n, |s| s as u64)?;
    }
    drop(ordered);
    link_or_copy(&pivots, &tmp.join(PQ_PIVOTS_FILE))?;
    workdir::fsync_dir(&tmp)?;
    interrupt(params, "write")?;
    install_output(&tmp, out_dir, params.force)?;
    phases.push((Phase::Writing, t.elapsed()));
    note_rss(progress, &mut peaks, Phase::Writing, budget);
    workdir::remove(&dir)?;
    drop(lock);

    let index_bytes = std::fs::read_dir(out_dir)
        .map_err(|e| BuildError::io(out_dir, e))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let pq_bytes = PqCodebook::read(&out_dir.join(PQ_PIVOTS_FILE))?.memory_bytes() as u64;
    Ok(BuildReport {
        n,
        dim,
        element: elem,
        pq_m: m,
        medoid: medoid_row,
        mean_degree: edges as f64 / n.max(1) as f64,
        phases,
        index_bytes,
        engine_ram_bytes: (n * m) as u64 + pq_bytes,
        partitions: parts,
        peak_rss_by_stage: peaks,
        memory_estimate_bytes: budget::FIXED_BYTES
            + (cap.min(n) as u64 * shape.vamana_bytes_per_point())
            + allowance,
    })
}

/// (current, peak) resident set size of this process in bytes (Linux `/proc/self/status`;
/// `(0, 0)` elsewhere).
pub fn rss_bytes() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Records and reports the peak RSS after a stage.
fn note_rss(progress: &dyn Progress, peaks: &mut Vec<(Phase, u64)>, phase: Phase, budget: u64) {
    let (now, peak) = rss_bytes();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    progress.message(&format!(
        "after {}: RSS {:.0} MiB, peak so far {:.0} MiB (budget {:.0} MiB)",
        phase.name(),
        mib(now),
        mib(peak),
        mib(budget)
    ));
    peaks.push((phase, peak));
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .and_then(|_| std::fs::File::open(to)?.sync_all())
        .map_err(|e| BuildError::io(to, e))
}

/// Trains PQ on a sample gathered from the mapped input: the rows the one-shot build would
/// train on (the same seeded choice), as many as the budget allows.
fn train_pq_sampled(
    rows: &Rows<'_>,
    shape: &Shape,
    budget: u64,
    seed: u64,
    progress: &dyn Progress,
) -> Result<PqCodebook, BuildError> {
    let n = shape.n;
    let d = shape.dim;
    let ns = shape.pq_sample(budget, MAX_TRAINING_SAMPLE).max(1);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids: Vec<usize> = if n <= ns {
        (0..n).collect()
    } else {
        rand::seq::index::sample(&mut rng, n, ns).into_vec()
    };
    let mut sample = vec![0f32; ids.len() * d];
    sample
        .par_chunks_mut(d)
        .zip(ids.par_iter())
        .try_for_each(|(out, &i)| {
            rows.raw(i, out, Access::Random)?;
            rows.check_finite(i, out)?;
            rows.normalize_if_cosine(out);
            Ok::<(), BuildError>(())
        })?;
    rows.file.release_pages();
    Ok(pq_train::train_pq(&sample, d, shape.pq_m, seed, progress))
}

/// Encodes every row into `pq_codes.bin.tmp` (input order = slot order), checking each row
/// for NaN/inf, in parallel chunks.
fn encode_streaming(
    rows: &Rows<'_>,
    pq: &PqCodebook,
    codes: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let n = rows.file.len();
    let d = rows.dim;
    let m = pq.m();
    let tmp = codes.with_extension("bin.tmp");
    let mut w = ssdann_layout::blob::BlobWriter::create(
        &tmp,
        &PQ_CODES_MAGIC,
        PQ_FILE_VERSION,
        &[n as u64, m as u64],
        (n * m) as u64,
    )?;
    const CHUNK: usize = 1 << 16;
    let mut buf = vec![0u8; CHUNK * m];
    progress.start(Phase::PqEncoding, n as u64);
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let out = &mut buf[..(end - start) * m];
        out.par_chunks_mut(m).enumerate().try_for_each_init(
            || (vec![0f32; d], Vec::new()),
            |(x, scratch), (k, code)| {
                let i = start + k;
                rows.raw(i, x, Access::Sequential)?;
                rows.check_finite(i, x)?;
                rows.normalize_if_cosine(x);
                pq.encode(x, code, scratch);
                Ok::<(), BuildError>(())
            },
        )?;
        w.write(out)?;
        progress.advance((end - start) as u64);
    }
    w.finish()?;
    progress.finish();
    rows.file.release_pages();
    Ok(())
}

/// The point nearest (L2, graph rows) to the mean of the graph rows: the one-shot build's
/// medoid, computed in two streaming passes.
fn streaming_medoid(rows: &Rows<'_>, n: usize) -> u32 {
    let gd = rows.graph_dim();
    let sum = (0..n)
        .into_par_iter()
        .with_min_len(4096)
        .fold(
            || (vec![0f64; gd], vec![0f32; gd]),
            |(mut s, mut row), i| {
                rows.graph_f32_mapped(i, &mut row);
                s.iter_mut()
                    .zip(&row)
                    .for_each(|(a, &x)| *a += f64::from(x));
                (s, row)
            },
        )
        .map(|(s, _)| s)
        .reduce(
            || vec![0f64; gd],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mean: Vec<f32> = sum.iter().map(|&s| (s / n as f64) as f32).collect();
    let (_, best) = (0..n)
        .into_par_iter()
        .with_min_len(4096)
        .map_init(
            || vec![0f32; gd],
            |row, i| {
                rows.graph_f32_mapped(i, row);
                (f32::l2_sq(row, &mean), i as u32)
            },
        )
        .reduce(
            || (f32::INFINITY, 0),
            |a, b| if (b.0, b.1) < (a.0, a.1) { b } else { a },
        );
    rows.file.release_pages();
    best
}

use ssdann_layout::Vector as _;
