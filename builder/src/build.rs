//! The whole offline build: data file → index directory (DiskANN, NeurIPS 2019, §3).
//!
//! Stages: load + validate (NaN/inf, cosine normalization) → PQ training → PQ encoding →
//! Vamana pass 1 and 2 → write `index.ssd`, `pq_pivots.bin`, `pq_codes.bin`, `labels.bin`
//! into a temporary sibling directory → fsync each file and the directory → rename into
//! place, or with `force` exchange with the old output atomically (→ fsync the parent). Every
//! write goes through `BuildParams::storage`. An interrupted build leaves only the temporary
//! `.NAME.building-PID` directory, which no reader takes for an index and a later build into
//! the same output removes once that process is gone ([`crate::output::reap_stale_temp_dirs`]).

use crate::error::BuildError;
pub use crate::output::{
    check_output, is_index_file_name, ExistingOutput, INDEX_DIR_FILES, INDEX_FILE,
};
use crate::output::{install_output, make_temp_dir};
pub use crate::params::{BuildParams, GraphPrecision};
use crate::progress::{Phase, Progress};
pub use crate::report::BuildReport;
use crate::start::{open_input, prepare};
use crate::vamana::build_vamana;
use crate::writer::{new_header, record_near_error, write_sector_file};
use crate::{pq_train, Result};
use rayon::prelude::*;
use ssdann_layout::pq::{write_codes_via, PQ_CODES_FILE, PQ_PIVOTS_FILE};
use ssdann_layout::{Element, ElementType, Metric};
use std::borrow::Cow;
use std::path::Path;
use std::time::Instant;

/// Builds an index from the vector file `data_path` into the directory `out_dir`.
///
/// # Errors
/// - [`BuildError::Layout`]: the data file is missing, empty, truncated, of an unsupported
///   extension, or holds NaN/inf (the error names the row).
/// - [`BuildError::InvalidParameter`]: see [`BuildParams::validate`]; cosine on u8/i8 data.
/// - [`BuildError::OutputExists`]: `out_dir` exists and `force` is false.
/// - [`BuildError::NotAnIndex`]: `force` is given but `out_dir` is not an index directory or
///   an empty directory ([`check_output`]; checked before the build and again before the
///   swap).
/// - [`BuildError::Io`]: writing the index failed.
///
/// # Parallelism
/// Runs on a rayon pool of `params.threads` threads.
///
/// # Example
/// ```no_run
/// use ssdann_builder::{build_index, BuildParams, NoProgress};
/// let report = build_index("base.fbin".as_ref(), "my_index".as_ref(), &BuildParams::default(), &NoProgress)?;
/// println!("{} points, PQ M = {}", report.n, report.pq_m);
/// # Ok::<(), ssdann_builder::BuildError>(())
/// ```
pub fn build_index(
    data_path: &Path,
    out_dir: &Path,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    let file = open_input(data_path)?;
    let pool = prepare(params, file.dim(), out_dir)?;
    if let Some(budget) = params.memory_budget_bytes {
        let shape = crate::partitioned::shape_of(&file, params, pool.current_num_threads());
        if shape.one_shot_bytes() > budget || params.interrupt_at.is_some() || params.resume {
            return pool.install(|| {
                crate::partitioned::build_partitioned(&file, out_dir, params, budget, progress)
            });
        }
    }
    let src = file.path();
    let release = || file.release_pages();
    pool.install(|| match file.element_type() {
        ElementType::F32 => build_typed::<f32>(
            src,
            file.contiguous::<f32>()?,
            file.dim(),
            &release,
            out_dir,
            params,
            progress,
        ),
        ElementType::U8 => build_typed::<u8>(
            src,
            file.contiguous::<u8>()?,
            file.dim(),
            &release,
            out_dir,
            params,
            progress,
        ),
        ElementType::I8 => build_typed::<i8>(
            src,
            file.contiguous::<i8>()?,
            file.dim(),
            &release,
            out_dir,
            params,
            progress,
        ),
    })
}

/// Builds an index from vectors already in memory: `data` is n × d row-major (`dim` = d).
/// Errors name the source as `<in-memory array>`; otherwise as [`build_index`].
///
/// # Errors
/// [`BuildError::InvalidParameter`] when `dim` is 0 or `data` is empty or not a multiple of
/// `dim`, and every error of [`build_index`] after loading.
pub fn build_from_vectors<T: Element>(
    data: &[T],
    dim: usize,
    out_dir: &Path,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    if dim == 0 || dim > ssdann_layout::dataset::MAX_DIM {
        return Err(BuildError::param(
            "d",
            dim,
            "dimension must be in 1..=65536",
        ));
    }
    if data.is_empty() || !data.len().is_multiple_of(dim) {
        return Err(BuildError::param(
            "data",
            format!("{} values", data.len()),
            format!("must be a non-empty n × d array with d = {dim}"),
        ));
    }
    if data.len() / dim >= u32::MAX as usize {
        return Err(BuildError::param(
            "n",
            data.len() / dim,
            "at most 2^32 - 2 points",
        ));
    }
    let pool = prepare(params, dim, out_dir)?;
    pool.install(|| {
        build_typed::<T>(
            Path::new("<in-memory array>"),
            Cow::Borrowed(data),
            dim,
            &|| {},
            out_dir,
            params,
            progress,
        )
    })
}

fn check_finite_parallel(src: &Path, data: &[f32], dim: usize) -> Result<()> {
    let bad = data
        .par_chunks(dim)
        .enumerate()
        .find_first(|(_, row)| row.iter().any(|x| !x.is_finite()));
    if let Some((row, vals)) = bad {
        let col = vals.iter().position(|x| !x.is_finite()).unwrap_or(0);
        return Err(ssdann_layout::LayoutError::NonFinite {
            path: src.into(),
            row: row as u64,
            column: col as u32,
            value: vals[col],
        }
        .into());
    }
    Ok(())
}

/// The vectors the Vamana graph is built on.
enum GraphSpace {
    /// The input itself (u8/i8 data under L2/cosine, or f32 with `--graph-precision f32`).
    Input,
    /// An f16 copy, d' columns, ranked by `metric`.
    F16 {
        vectors: Vec<half::f16>,
        dim: usize,
        metric: Metric,
    },
    /// An f32 copy, d' columns, ranked by `metric` (inner product on integer data, or f32
    /// precision asked for).
    F32 {
        vectors: Vec<f32>,
        dim: usize,
        metric: Metric,
    },
}

impl GraphSpace {
    /// Chooses and builds the graph's vectors.
    ///
    /// - f32 data, `GraphPrecision::F16`: a half-precision copy (half the memory traffic).
    /// - Inner product: the MIPS-to-L2 reduction (Bachrach et al., RecSys 2014; DiskANN
    ///   builds its `mips` graphs the same way): `x' = [x, sqrt(M² − ‖x‖²)]` with M the
    ///   largest norm, so that `‖[q, 0] − x'‖² = ‖q‖² + M² − 2 q·x` ranks exactly as `−q·x`
    ///   and RobustPrune's α rule works on a true metric. The stored vectors, the PQ codes
    ///   and the search stay in the original space.
    fn new<T: Element>(
        data: &[T],
        dim: usize,
        params: &BuildParams,
        release_input: &(dyn Fn() + Sync),
    ) -> GraphSpace {
        let half = T::TYPE == ElementType::F32 && params.graph_precision == GraphPrecision::F16;
        if params.metric == Metric::InnerProduct {
            let norms: Vec<f32> = data
                .par_chunks(dim)
                .map(|r| r.iter().map(|v| v.to_f32() * v.to_f32()).sum())
                .collect();
            let max = norms.iter().copied().fold(0.0f32, f32::max);
            let d1 = dim + 1;
            let augmented = |out: &mut [f32], row: &[T], norm: f32| {
                out[..dim]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(o, v)| *o = v.to_f32());
                out[dim] = (max - norm).max(0.0).sqrt();
            };
            let mut f = vec![0f32; data.len() / dim * d1];
            f.par_chunks_mut(d1)
                .zip(data.par_chunks(dim))
                .zip(norms.par_iter())
                .for_each(|((o, r), &nm)| augmented(o, r, nm));
            release_input();
            return if half {
                let mut h = vec![half::f16::ZERO; f.len()];
                h.par_chunks_mut(d1 * 1024)
                    .zip(f.par_chunks(d1 * 1024))
                    .for_each(|(d, s)| ssdann_layout::distance::f32_to_f16(s, d));
                GraphSpace::F16 {
                    vectors: h,
                    dim: d1,
                    metric: Metric::L2,
                }
            } else {
                GraphSpace::F32 {
                    vectors: f,
                    dim: d1,
                    metric: Metric::L2,
                }
            };
        }
        if half {
            let src = bytemuck::cast_slice::<T, f32>(data);
            let mut h = vec![half::f16::ZERO; src.len()];
            h.par_chunks_mut(dim * 1024)
                .zip(src.par_chunks(dim * 1024))
                .for_each(|(d, s)| ssdann_layout::distance::f32_to_f16(s, d));
            // The graph phase reads only the copy: let the file's pages leave the RSS until
            // the writer streams them again.
            release_input();
            return GraphSpace::F16 {
                vectors: h,
                dim,
                metric: params.metric,
            };
        }
        GraphSpace::Input
    }
}

#[allow(clippy::too_many_arguments)]
fn build_typed<T: Element>(
    src: &Path,
    raw: Cow<'_, [T]>,
    dim: usize,
    release_input: &(dyn Fn() + Sync),
    out_dir: &Path,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Result<BuildReport> {
    let n = raw.len() / dim;
    let mut phases = Vec::new();
    let t = Instant::now();
    progress.start(Phase::Load, n as u64);
    if params.metric == Metric::Cosine && T::TYPE != ElementType::F32 {
        return Err(BuildError::param(
            "--metric",
            "cosine",
            format!("cosine needs f32 data; {} holds {}", src.display(), T::TYPE),
        ));
    }
    // Check NaN/inf in parallel (an error names the row), and normalize a
    // copy for cosine; otherwise the build reads the file mapping in place.
    let data: Cow<'_, [T]> = if params.metric == Metric::Cosine {
        let mut v: Vec<f32> = bytemuck::cast_slice::<T, f32>(&raw).to_vec();
        check_finite_parallel(src, &v, dim)?;
        v.par_chunks_mut(dim)
            .for_each(ssdann_layout::distance::normalize);
        drop(raw);
        Cow::Owned(bytemuck::cast_slice::<f32, T>(&v).to_vec())
    } else {
        if T::TYPE == ElementType::F32 {
            check_finite_parallel(src, bytemuck::cast_slice::<T, f32>(&raw), dim)?;
        }
        raw
    };
    progress.advance(n as u64);
    let data: &[T] = &data;
    progress.finish();
    phases.push((Phase::Load, t.elapsed()));

    let m = params
        .pq_bytes
        .unwrap_or_else(|| pq_train::default_pq_m(dim, T::TYPE.size_bytes()));
    // The record layout first: a refused encoding fails before any training.
    let layout = crate::refine::record_layout(params, data, dim, m)?;
    let nbr_code_m = layout.nbr_code_m;
    let t = Instant::now();
    let pq = pq_train::train_pq(data, dim, m, params.seed, progress);
    phases.push((Phase::PqTraining, t.elapsed()));
    let t = Instant::now();
    let codes = pq_train::encode_all(&pq, data, dim, progress);
    phases.push((Phase::PqEncoding, t.elapsed()));

    let vp = params.vamana();
    let graph_space = GraphSpace::new(data, dim, params, release_input);
    let graph = match &graph_space {
        GraphSpace::Input => build_vamana(data, dim, params.metric, &vp, progress),
        GraphSpace::F16 {
            vectors,
            dim: gd,
            metric,
        } => build_vamana(vectors, *gd, *metric, &vp, progress),
        GraphSpace::F32 {
            vectors,
            dim: gd,
            metric,
        } => build_vamana(vectors, *gd, *metric, &vp, progress),
    };
    phases.push((Phase::VamanaPass1, graph.pass_times[0]));
    phases.push((Phase::VamanaPass2, graph.pass_times[1]));

    let t = Instant::now();
    let perm: Vec<u32> = if params.reorder {
        progress.start(Phase::Reorder, 1);
        let npb = layout.nodes_per_block;
        let p = match &graph_space {
            GraphSpace::Input => crate::reorder::block_order(
                &graph.adjacency,
                graph.medoid,
                npb,
                data,
                dim,
                params.metric,
            ),
            GraphSpace::F16 {
                vectors,
                dim: gd,
                metric,
            } => crate::reorder::block_order(
                &graph.adjacency,
                graph.medoid,
                npb,
                vectors,
                *gd,
                *metric,
            ),
            GraphSpace::F32 {
                vectors,
                dim: gd,
                metric,
            } => crate::reorder::block_order(
                &graph.adjacency,
                graph.medoid,
                npb,
                vectors,
                *gd,
                *metric,
            ),
        };
        progress.advance(1);
        progress.finish();
        p
    } else {
        (0..n as u32).collect()
    };
    drop(graph_space);
    let inv = crate::reorder::invert(&perm);
    let adjacency: Vec<Vec<u32>> = perm
        .par_iter()
        .map(|&old| {
            graph.adjacency[old as usize]
                .iter()
                .map(|&v| inv[v as usize])
                .collect()
        })
        .collect();
    drop(graph.adjacency);
    let medoid_slot = inv[graph.medoid as usize];
    let mut slot_codes = vec![0u8; codes.len()];
    for (slot, &old) in perm.iter().enumerate() {
        slot_codes[slot * m..(slot + 1) * m]
            .copy_from_slice(&codes[old as usize * m..(old as usize + 1) * m]);
    }
    drop(codes);
    let refine = (nbr_code_m > 0).then(|| {
        crate::refine::train_and_encode(
            &pq,
            data,
            dim,
            &perm,
            &slot_codes,
            nbr_code_m,
            layout.f16_vectors,
            params,
            progress,
        )
    });
    let labels: Vec<u64> = perm.iter().map(|&old| u64::from(old)).collect();
    phases.push((Phase::Reorder, t.elapsed()));

    let t = Instant::now();
    let header = new_header(n, T::TYPE, params, layout, medoid_slot, m);
    let storage = &params.storage;
    let tmp = make_temp_dir(storage, out_dir)?;
    let dir = &tmp.path;
    let index_path = dir.join(INDEX_FILE);
    let mut measured = header.clone();
    write_sector_file(
        storage,
        &index_path,
        &header,
        data,
        &adjacency,
        &perm,
        refine.as_ref().map(|r| r.entries.as_slice()),
        progress,
        &mut |file| {
            record_near_error(
                storage,
                file,
                &index_path,
                &mut measured,
                &pq,
                refine.as_ref().map(|r| &r.codebook),
                &mut |s, out| {
                    out.copy_from_slice(&slot_codes[s as usize * m..(s as usize + 1) * m]);
                    Ok(())
                },
            )
        },
    )?;
    pq.write_via(storage, "build.pq_pivots", &dir.join(PQ_PIVOTS_FILE))?;
    if let Some(r) = &refine {
        let path = dir.join(ssdann_layout::pq::PQ_REFINE_FILE);
        r.codebook.write_via(storage, "build.pq_refine", &path)?;
    }
    write_codes_via(
        storage,
        "build.pq_codes",
        &dir.join(PQ_CODES_FILE),
        n,
        m,
        &slot_codes,
    )?;
    let codes_path = dir.join(PQ_CODES_FILE);
    crate::navigation::write_default(storage, dir, &codes_path, &pq, params.metric, n, None)?;
    let labels_path = dir.join(ssdann_layout::labels::LABELS_FILE);
    ssdann_layout::labels::write_labels_via(storage, "build.labels", &labels_path, &labels)?;
    crate::durable::fsync_dir(storage, dir, "build.temp_dir")?;
    install_output(storage, tmp, out_dir, params.force)?;
    phases.push((Phase::Writing, t.elapsed()));

    let index_bytes = std::fs::read_dir(out_dir)
        .map_err(|e| BuildError::io(out_dir, e))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    Ok(BuildReport {
        n,
        dim,
        element: T::TYPE,
        pq_m: m,
        nbr_code_m,
        f16_vectors: layout.f16_vectors,
        medoid: graph.medoid,
        mean_degree: adjacency.iter().map(Vec::len).sum::<usize>() as f64 / n.max(1) as f64,
        phases,
        index_bytes,
        engine_ram_bytes: (slot_codes.len()
            + labels.len() * 8
            + pq.memory_bytes()
            + refine.as_ref().map_or(0, |r| r.codebook.memory_bytes()))
            as u64,
        partitions: 1,
        peak_rss_by_stage: Vec::new(),
        memory_estimate_bytes: crate::partitioned::shape(
            n,
            dim,
            T::TYPE,
            params,
            m,
            rayon::current_num_threads(),
        )
        .one_shot_bytes(),
    })
}
