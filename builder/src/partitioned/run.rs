//! One partitioned build's state and its five stages ([`Run`]; the fifth, the write, is in
//! `write.rs`), each a method that does its work only when its output file is missing from
//! the work directory. The whole build ([`super::build_partitioned`]) runs them in order
//! under one lock.

use super::budget::{self, min_partition, Shape};
use super::rows::{Access, GraphType, Rows};
use super::workdir::{self, commit, graph_path, Existing, MERGED_FILE, PARTITIONS_FILE};
use super::{graphs, interrupt, note_rss, shard};
use crate::durable::FileWriter;
use crate::params::BuildParams;
use crate::pq_train::{self, MAX_TRAINING_SAMPLE};
use crate::progress::{Phase, Progress};
use crate::BuildError;
use half::f16;
use rand::SeedableRng;
use rayon::prelude::*;
use ssdann_layout::pq::{PQ_CODES_FILE, PQ_CODES_MAGIC, PQ_FILE_VERSION, PQ_PIVOTS_FILE};
use ssdann_layout::storage::StorageRef;
use ssdann_layout::{ElementType, Metric, PqCodebook, Vector as _, VectorFile};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A partitioned build of one input under one set of parameters: what every stage needs.
pub(crate) struct Run<'a> {
    pub(crate) file: &'a VectorFile,
    pub(crate) rows: Rows<'a>,
    pub(crate) params: &'a BuildParams,
    pub(crate) budget: u64,
    pub(crate) shape: Shape,
    /// Most points per partition.
    pub(crate) cap: usize,
    /// The work directory.
    pub(crate) dir: PathBuf,
    /// The manifest text this build's work directory must hold.
    pub(crate) manifest: String,
    pub(crate) progress: &'a dyn Progress,
    /// Wall time of each stage run by this process.
    pub(crate) phases: Vec<(Phase, Duration)>,
    /// Peak RSS after each stage run by this process.
    pub(crate) peaks: Vec<(Phase, u64)>,
    /// Build time of the partition graphs run by this process (pass 1, pass 2).
    pub(crate) pass: [Duration; 2],
}

impl<'a> Run<'a> {
    /// Checks the inputs and sizes the partitions (the caller's rayon pool counts the
    /// threads), or takes `cap` points per partition when given (a plan's).
    ///
    /// # Errors
    /// [`BuildError::InvalidParameter`] for cosine on non-f32 data, or an explicit
    /// `--neighbor-codes` that no sector or the budget can hold;
    /// [`BuildError::BudgetTooSmall`] when one partition of the smallest useful size does
    /// not fit; [`BuildError::Io`] reading the input's metadata.
    pub(crate) fn new(
        file: &'a VectorFile,
        out_dir: &Path,
        params: &'a BuildParams,
        budget: u64,
        cap: Option<usize>,
        progress: &'a dyn Progress,
    ) -> Result<Self, BuildError> {
        let n = file.len();
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
        let shape = super::shape_of(file, params, rayon::current_num_threads());
        // A stage run by a later process keeps the plan's cap (its thread count may differ).
        let cap = cap.unwrap_or_else(|| shape.partition_cap(budget));
        let min = min_partition(params.max_degree).min(n);
        if cap < min || !shape.fits(budget, min) {
            let minimum = shape.minimum_budget(min);
            let reason = if cap < min {
                format!(
                    "one partition of {min} points needs {} bytes per point",
                    shape.vamana_bytes_per_point()
                )
            } else {
                format!(
                    "the merge of {} partitions or the partition k-means sample does not fit",
                    shape.planned_parts(cap)
                )
            };
            return Err(BuildError::BudgetTooSmall {
                budget,
                minimum,
                reason,
            });
        }
        // an explicit --neighbor-codes the write stage could not hold: refused before any work
        super::codes::check_explicit_codes(params, n, shape.dim, elem, shape.pq_m, budget)?;
        let allowance = (budget as f64 * budget::PAGE_ALLOWANCE_FRACTION) as u64;
        let rows = Rows::new(file, params.metric, params.graph_precision, allowance)?;
        let dir = workdir::work_dir_for(out_dir)?;
        let mut run = Run {
            file,
            rows,
            params,
            budget,
            shape,
            cap,
            dir,
            manifest: String::new(),
            progress,
            phases: Vec::new(),
            peaks: Vec::new(),
            pass: [Duration::ZERO; 2],
        };
        run.manifest = run.manifest_text()?;
        Ok(run)
    }

    /// The manifest: the input and every parameter that shapes the result.
    fn manifest_text(&self) -> Result<String, BuildError> {
        let file = self.file;
        let params = self.params;
        let meta = std::fs::metadata(file.path()).map_err(|e| BuildError::io(file.path(), e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(workdir::manifest_text(&[
            (
                "data",
                std::fs::canonicalize(file.path())
                    .unwrap_or(file.path().into())
                    .display()
                    .to_string(),
            ),
            ("data_bytes", meta.len().to_string()),
            ("data_mtime_ns", mtime.to_string()),
            ("n", file.len().to_string()),
            ("d", file.dim().to_string()),
            ("element", file.element_type().to_string()),
            ("metric", format!("{:?}", params.metric)),
            ("R", params.max_degree.to_string()),
            ("L", params.build_l.to_string()),
            ("alpha", params.alpha.to_string()),
            ("passes", params.passes.to_string()),
            ("pq_m", self.shape.pq_m.to_string()),
            ("seed", params.seed.to_string()),
            ("graph_precision", format!("{:?}", params.graph_precision)),
            ("partition_cap", self.cap.to_string()),
            ("memory_budget", self.budget.to_string()),
            ("reorder", params.reorder.to_string()),
            ("saturate", params.saturate_graph.to_string()),
            ("neighbor_codes", params.neighbor_codes.to_string()),
            (
                "vector_encoding",
                match params.f16_vectors {
                    None => "auto",
                    Some(true) => "f16",
                    Some(false) => "exact",
                }
                .to_string(),
            ),
            ("max_index_growth", params.max_index_growth.to_string()),
        ]))
    }

    /// Takes the exclusive lock on the work directory and makes it ready: a work directory
    /// with the same manifest is kept when `resume`, any other of ours removed, a new one
    /// made with the manifest. The lock is held as long as the returned file is.
    ///
    /// # Errors
    /// [`BuildError::BuildInProgress`], [`BuildError::ResumeMismatch`],
    /// [`BuildError::NotAnIndex`] (a directory that is not ours), [`BuildError::Io`].
    pub(crate) fn open_work_dir(&self, resume: bool) -> Result<Option<File>, BuildError> {
        let dir = &self.dir;
        let storage = &self.params.storage;
        // One build per work directory: an exclusive lock on it, held until the build ends,
        // taken before anything in it is read or removed.
        let mut lock = workdir::lock(dir)?;
        match workdir::inspect(dir, &self.manifest)? {
            Existing::Absent => {}
            Existing::Same if resume => self
                .progress
                .message(&format!("resuming the build in {}", dir.display())),
            Existing::Different(field, old, new) if resume => {
                return Err(BuildError::ResumeMismatch {
                    path: dir.clone(),
                    field,
                    old,
                    new,
                })
            }
            _ => workdir::remove(storage, dir)?,
        }
        if !dir.exists() {
            crate::durable::create_parents(storage, dir)?;
            storage
                .create_dir(dir)
                .map_err(|e| BuildError::io(dir, e))?;
            lock = workdir::lock(dir)?;
            let tmp = dir.join("MANIFEST.tmp");
            let mut w = FileWriter::create(storage, &tmp)?;
            w.write(self.manifest.as_bytes())?;
            w.finish("partitioned.manifest")?;
            commit(storage, &tmp, &dir.join(workdir::MANIFEST))?;
        }
        Ok(lock)
    }

    fn note(&mut self, phase: Phase) {
        note_rss(self.progress, &mut self.peaks, phase, self.budget);
    }

    /// Stage 1: PQ trained on a budget-sized sample, every point encoded streaming.
    ///
    /// # Errors
    /// As the one-shot build's PQ stage, and [`BuildError::Io`] writing its files.
    pub(crate) fn pq(&mut self) -> Result<(), BuildError> {
        let pivots = self.dir.join(PQ_PIVOTS_FILE);
        let codes = self.dir.join(PQ_CODES_FILE);
        if pivots.exists() && codes.exists() {
            return Ok(());
        }
        let t = Instant::now();
        let pq = train_pq_sampled(
            &self.rows,
            &self.shape,
            self.budget,
            self.params.seed,
            self.progress,
        )?;
        let storage = &self.params.storage;
        let tmp = self.dir.join("pq_pivots.bin.tmp");
        pq.write_via(storage, "partitioned.pq_pivots", &tmp)?;
        commit(storage, &tmp, &pivots)?;
        self.phases.push((Phase::PqTraining, t.elapsed()));
        let t = Instant::now();
        encode_streaming(storage, &self.rows, &pq, &codes, self.progress)?;
        interrupt(self.params, "pq")?;
        commit(storage, &self.dir.join("pq_codes.bin.tmp"), &codes)?;
        self.phases.push((Phase::PqEncoding, t.elapsed()));
        self.note(Phase::PqEncoding);
        Ok(())
    }

    /// Stage 2: k-means partitions, each point assigned to its 2 nearest. Returns the
    /// number of partitions.
    ///
    /// # Errors
    /// [`BuildError::Layout`] / [`BuildError::Io`] naming the file.
    pub(crate) fn partitions(&mut self) -> Result<usize, BuildError> {
        let t = Instant::now();
        let parts_path = self.dir.join(PARTITIONS_FILE);
        let (n, cap) = (self.file.len(), self.cap);
        if !parts_path.exists() {
            let centroids = if cap >= n {
                shard::Centroids {
                    count: 1,
                    transposed: vec![0.0; self.rows.graph_dim()],
                }
            } else {
                let sample = self
                    .shape
                    .partition_sample(self.budget, shard::PARTITION_SAMPLE);
                shard::choose_partitions(&self.rows, n, cap, sample, self.params.seed)?
            };
            let storage = &self.params.storage;
            let sizes = shard::assign(
                storage,
                &self.rows,
                n,
                &centroids,
                cap,
                &self.dir,
                budget::stage_bytes(self.budget),
                self.progress,
            )?;
            interrupt(self.params, "partition")?;
            commit(
                storage,
                &self.dir.join(format!("{PARTITIONS_FILE}.tmp")),
                &parts_path,
            )?;
            self.progress.message(&format!(
                "{} partitions of {}..{} points (cap {cap}, budget {:.2} GiB)",
                sizes.len(),
                sizes.iter().min().unwrap_or(&0),
                sizes.iter().max().unwrap_or(&0),
                self.budget as f64 / (1u64 << 30) as f64
            ));
            self.phases.push((Phase::Partition, t.elapsed()));
            self.note(Phase::Partition);
        }
        self.partition_count()
    }

    /// The number of partitions `partitions.bin` holds.
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming the file.
    pub(crate) fn partition_count(&self) -> Result<usize, BuildError> {
        workdir::read_partition_count(&self.dir)
    }

    /// Stage 3 for partition `p` of `parts`: its Vamana graph. Returns false when its graph
    /// file was already there (nothing done).
    ///
    /// # Errors
    /// [`BuildError::Layout`] / [`BuildError::Io`] naming the file.
    pub(crate) fn graph(&mut self, p: usize, parts: usize) -> Result<bool, BuildError> {
        let dir = &self.dir;
        if graph_path(dir, p).exists() {
            return Ok(false);
        }
        let size = workdir::read_ids_count(&workdir::ids_path(dir, p))?;
        self.progress
            .message(&format!("partition {}/{parts}: {size} points", p + 1));
        let (rows, n, vp) = (&self.rows, self.file.len(), self.params.vamana());
        let st = &self.params.storage;
        let point = format!("graph-{p}");
        let hook = || interrupt(self.params, &point);
        let pr = self.progress;
        let times = match rows.graph_type {
            GraphType::F16 => graphs::build_partition::<f16>(st, rows, n, dir, p, &vp, pr, &hook),
            GraphType::F32 => graphs::build_partition::<f32>(st, rows, n, dir, p, &vp, pr, &hook),
            GraphType::U8 => graphs::build_partition::<u8>(st, rows, n, dir, p, &vp, pr, &hook),
            GraphType::I8 => graphs::build_partition::<i8>(st, rows, n, dir, p, &vp, pr, &hook),
        }?;
        self.pass[0] += times[0];
        self.pass[1] += times[1];
        super::release_heap();
        Ok(true)
    }

    /// Records the partition graphs' pass times as two phases.
    pub(crate) fn graphs_done(&mut self) {
        self.phases.push((Phase::VamanaPass1, self.pass[0]));
        self.phases.push((Phase::VamanaPass2, self.pass[1]));
        self.note(Phase::VamanaPass2);
    }

    /// Stage 4: the partition graphs merged into `merged.graph` from the global medoid.
    ///
    /// # Errors
    /// [`BuildError::Layout`] naming a damaged partition file; [`BuildError::Io`].
    pub(crate) fn merge(&mut self, parts: usize) -> Result<(), BuildError> {
        let merged = self.dir.join(MERGED_FILE);
        if merged.exists() {
            return Ok(());
        }
        let t = Instant::now();
        let rows = &self.rows;
        let n = self.file.len();
        let medoid = streaming_medoid(rows, n);
        let (r, a, sat, dir, pr) = (
            self.params.max_degree,
            self.params.alpha,
            self.params.saturate_graph,
            &self.dir,
            self.progress,
        );
        let hook = || interrupt(self.params, "merge");
        let st = &self.params.storage;
        // The plan for the partitions there are; at least one record per stream and the
        // smallest chunk when more partitions came out than the budget planned for.
        let plan = self
            .shape
            .merge_plan(self.budget, parts)
            .unwrap_or(budget::MergePlan {
                chunk_rows: budget::MIN_MERGE_CHUNK,
                records_per_read: 1,
            });
        match rows.graph_type {
            GraphType::F16 => graphs::merge_graphs::<f16>(
                st, rows, n, dir, parts, r, a, sat, medoid, plan, pr, &hook,
            ),
            GraphType::F32 => graphs::merge_graphs::<f32>(
                st, rows, n, dir, parts, r, a, sat, medoid, plan, pr, &hook,
            ),
            GraphType::U8 => graphs::merge_graphs::<u8>(
                st, rows, n, dir, parts, r, a, sat, medoid, plan, pr, &hook,
            ),
            GraphType::I8 => graphs::merge_graphs::<i8>(
                st, rows, n, dir, parts, r, a, sat, medoid, plan, pr, &hook,
            ),
        }?;
        self.phases.push((Phase::GraphMerge, t.elapsed()));
        self.note(Phase::GraphMerge);
        Ok(())
    }
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
    storage: &StorageRef,
    rows: &Rows<'_>,
    pq: &PqCodebook,
    codes: &Path,
    progress: &dyn Progress,
) -> Result<(), BuildError> {
    let n = rows.file.len();
    let d = rows.dim;
    let m = pq.m();
    let tmp = codes.with_extension("bin.tmp");
    let mut w = ssdann_layout::blob::BlobWriter::create_via(
        storage,
        "partitioned.pq_codes",
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
