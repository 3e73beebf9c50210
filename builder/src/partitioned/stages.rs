//! The partitioned build's stages run one at a time, each by its own process, on one machine
//! or on many that see the work directory on a shared filesystem (`ssdann build plan |
//! partition | merge | write`, and `ssdann.distributed.build` on Ray).
//!
//! [`plan_partitioned`] takes the input and the parameters, runs the PQ and partition stages
//! and records everything in the work directory's `MANIFEST`; [`run_stage`] reads them back
//! from there, so a partition job needs only the output path and its partition number. The
//! files, names and resume rules are those of `ssdann build --memory-budget`: a stage whose
//! output file exists is done and is not run again, so a stage job that died is simply run
//! again; `ssdann build --memory-budget … --resume` can finish a plan's build in one process.
//!
//! Locks: `plan`, `merge` and `write` hold the work directory's exclusive lock (as the
//! one-process build does); each `partition` job holds it shared, plus an exclusive lock on
//! its own `part-XXXX.ids`, so partition jobs run side by side and nothing else runs with
//! them.

use super::run::Run;
use super::workdir::{self, graph_path, MANIFEST, MERGED_FILE, PARTITIONS_FILE};
use crate::params::{BuildParams, GraphPrecision};
use crate::progress::Progress;
use crate::report::BuildReport;
use crate::BuildError;
use ssdann_layout::{LayoutError, Metric};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One stage of the partitioned build, run on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// PQ training and encoding, then the k-means partitions ([`plan_partitioned`]).
    Plan,
    /// The Vamana graph of partition I (0-based).
    Partition(usize),
    /// The partition graphs merged into one.
    Merge,
    /// The sector file written and swapped into the output directory.
    Write,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Plan => write!(f, "plan"),
            Stage::Partition(p) => write!(f, "partition {p}"),
            Stage::Merge => write!(f, "merge"),
            Stage::Write => write!(f, "write"),
        }
    }
}

/// What one stage run did.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// The stage.
    pub stage: Stage,
    /// The work directory.
    pub work_dir: PathBuf,
    /// Partitions in the plan.
    pub partitions: usize,
    /// Points in the partition ([`Stage::Partition`] only).
    pub points: Option<u64>,
    /// False when the stage's output was already there and nothing was done (a job run
    /// again after it finished).
    pub ran: bool,
    /// Wall time of this run, in seconds.
    pub seconds: f64,
    /// Peak resident set size of this process, in bytes (Linux; 0 elsewhere).
    pub peak_rss_bytes: u64,
    /// The finished build's report ([`Stage::Write`] only).
    pub build: Option<BuildReport>,
}

/// The plan a work directory records: the input and every parameter the stages use.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The work directory.
    pub work_dir: PathBuf,
    /// The input vector file (its canonical path when planned).
    pub data: PathBuf,
    /// The build parameters (`pq_bytes` resolved to the planned M).
    pub params: BuildParams,
    /// The memory budget, in bytes.
    pub budget: u64,
    /// Most points per partition.
    pub partition_cap: usize,
}

/// Reads the plan of the partitioned build into `out_dir` from its work directory's
/// `MANIFEST`.
///
/// # Errors
/// [`BuildError::StageMissing`] when there is no work directory (no plan);
/// [`BuildError::NotAnIndex`] when the directory holds no manifest of ours;
/// [`BuildError::Layout`] naming the manifest and the field that is missing or unreadable.
pub fn read_plan(out_dir: &Path) -> Result<Plan, BuildError> {
    let dir = workdir::work_dir_for(out_dir)?;
    if !dir.is_dir() {
        return Err(BuildError::StageMissing {
            path: dir,
            missing: "the plan".into(),
            next: format!(
                "`ssdann build plan --data DATA --out {} --memory-budget GIB`",
                out_dir.display()
            ),
        });
    }
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(s) if s.starts_with(workdir::MANIFEST_HEADER) => s,
        _ => {
            return Err(BuildError::NotAnIndex {
                path: dir,
                reason: format!("no {MANIFEST} of a partitioned build in it"),
            })
        }
    };
    let get = |key: &'static str| -> Result<&str, BuildError> {
        text.lines()
            .skip(1)
            .filter_map(|l| l.split_once(" = "))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| LayoutError::corrupt(&path, key, "missing").into())
    };
    fn parse<T: std::str::FromStr>(
        path: &Path,
        key: &'static str,
        v: &str,
    ) -> Result<T, BuildError> {
        v.parse()
            .map_err(|_| LayoutError::corrupt(path, key, format!("unreadable value {v:?}")).into())
    }
    let num = |key: &'static str| -> Result<u64, BuildError> { parse(&path, key, get(key)?) };
    let metric = match get("metric")? {
        "L2" => Metric::L2,
        "InnerProduct" => Metric::InnerProduct,
        "Cosine" => Metric::Cosine,
        v => return Err(LayoutError::corrupt(&path, "metric", format!("unknown {v:?}")).into()),
    };
    let graph_precision = match get("graph_precision")? {
        "F16" => GraphPrecision::F16,
        "F32" => GraphPrecision::F32,
        v => {
            let why = format!("unknown {v:?}");
            return Err(LayoutError::corrupt(&path, "graph_precision", why).into());
        }
    };
    let params = BuildParams {
        metric,
        max_degree: num("R")? as usize,
        build_l: num("L")? as usize,
        alpha: parse(&path, "alpha", get("alpha")?)?,
        pq_bytes: Some(num("pq_m")? as usize),
        seed: num("seed")?,
        reorder: parse(&path, "reorder", get("reorder")?)?,
        graph_precision,
        memory_budget_bytes: Some(num("memory_budget")?),
        passes: num("passes")? as usize,
        // absent from the manifests of builds planned before saturation was recorded there
        saturate_graph: match get("saturate") {
            Ok(v) => parse(&path, "saturate", v)?,
            Err(_) => false,
        },
        // The record layout's request. Absent from manifests planned before budgeted builds
        // wrote neighbour codes: those builds wrote plain records with exact vectors.
        neighbor_codes: match get("neighbor_codes") {
            Ok(v) => parse(&path, "neighbor_codes", v)?,
            Err(_) => false,
        },
        f16_vectors: match get("vector_encoding") {
            Ok("auto") => None,
            Ok("f16") => Some(true),
            Ok("exact") | Err(_) => Some(false),
            Ok(v) => {
                let why = format!("unknown {v:?}");
                return Err(LayoutError::corrupt(&path, "vector_encoding", why).into());
            }
        },
        max_index_growth: match get("max_index_growth") {
            Ok(v) => parse(&path, "max_index_growth", v)?,
            Err(_) => 1.0,
        },
        ..BuildParams::default()
    };
    Ok(Plan {
        work_dir: dir,
        data: PathBuf::from(get("data")?),
        budget: num("memory_budget")?,
        partition_cap: num("partition_cap")? as usize,
        params,
    })
}

/// How far a build planned into `out_dir` has come (read without locking: a snapshot).
#[derive(Clone, Debug)]
pub struct PlanStatus {
    /// The plan.
    pub plan: Plan,
    /// Partitions in the plan (0 while the plan is not finished).
    pub partitions: usize,
    /// Points in each partition (its `part-XXXX.ids` count).
    pub sizes: Vec<u64>,
    /// The partitions whose graph is built.
    pub graphs_done: Vec<usize>,
    /// Whether the merged graph is written.
    pub merged: bool,
}

/// The status of the build planned into `out_dir` (`ssdann build status`).
///
/// # Errors
/// As [`read_plan`]; [`BuildError::Layout`] naming a damaged `partitions.bin`.
pub fn plan_status(out_dir: &Path) -> Result<PlanStatus, BuildError> {
    let plan = read_plan(out_dir)?;
    let dir = &plan.work_dir;
    let partitions = if dir.join(PARTITIONS_FILE).exists() {
        workdir::read_partition_count(dir)?
    } else {
        0
    };
    let sizes = (0..partitions)
        .map(|p| workdir::read_ids_count(&workdir::ids_path(dir, p)))
        .collect::<Result<Vec<u64>, BuildError>>()?;
    let graphs_done = (0..partitions)
        .filter(|&p| graph_path(dir, p).exists())
        .collect();
    let merged = dir.join(MERGED_FILE).exists();
    Ok(PlanStatus {
        plan,
        partitions,
        sizes,
        graphs_done,
        merged,
    })
}

/// `ssdann build plan`: runs the partitioned build's first two stages — PQ, then the
/// k-means partitions — into the work directory beside `out_dir`, and records the input and
/// `params` there for the later stages. `params.memory_budget_bytes` sizes the partitions
/// (one partition when the whole graph fits in it). As `ssdann build --memory-budget`, a
/// plan already there is kept when `params.resume` and its manifest matches, and replaced
/// otherwise.
///
/// # Errors
/// [`BuildError::InvalidParameter`] without a memory budget or with parameters out of
/// range; every error of [`crate::build_index`] up to the partitions.
pub fn plan_partitioned(
    data: &Path,
    out_dir: &Path,
    params: &BuildParams,
    progress: &dyn Progress,
) -> Result<StageReport, BuildError> {
    let budget = params.memory_budget_bytes.ok_or_else(|| {
        BuildError::param(
            "--memory-budget",
            "none",
            "build plan needs a memory budget",
        )
    })?;
    let file = crate::start::open_input(data)?;
    let pool = crate::start::prepare(params, file.dim(), out_dir)?;
    pool.install(|| {
        let t = Instant::now();
        let mut run = Run::new(&file, out_dir, params, budget, None, progress)?;
        let lock = run.open_work_dir(params.resume)?;
        run.pq()?;
        let parts = run.partitions()?;
        drop(lock);
        Ok(report(Stage::Plan, &run.dir, parts, None, true, t, None))
    })
}

/// Runs one later stage ([`Stage::Partition`], [`Stage::Merge`] or [`Stage::Write`]) of the
/// build planned into `out_dir`, with the input and parameters its plan records, on
/// `threads` threads (`None`: all cores). A stage whose output is already there does
/// nothing (`ran` false). `force` is the one-shot build's `--force`, for [`Stage::Write`].
///
/// # Errors
/// [`BuildError::StageMissing`] when the plan or an earlier stage's output is missing (named,
/// with the command that makes it); [`BuildError::InvalidParameter`] for a partition number
/// out of range or [`Stage::Plan`]; [`BuildError::PlanMismatch`] when the input changed
/// since the plan; [`BuildError::PartitionInProgress`] / [`BuildError::BuildInProgress`]
/// when another process holds the lock it needs; every error of the stage itself.
pub fn run_stage(
    out_dir: &Path,
    stage: Stage,
    threads: Option<usize>,
    force: bool,
    progress: &dyn Progress,
) -> Result<StageReport, BuildError> {
    if stage == Stage::Plan {
        return Err(BuildError::param(
            "stage",
            stage,
            "the plan needs the input and the parameters: use plan_partitioned",
        ));
    }
    let plan = read_plan(out_dir)?;
    let params = BuildParams {
        threads,
        force,
        ..plan.params.clone()
    };
    let file = crate::start::open_input(&plan.data)?;
    params.validate(file.dim())?;
    if stage == Stage::Write {
        crate::output::check_output(out_dir, force)?;
    }
    let pool = crate::start::thread_pool(threads)?;
    pool.install(|| {
        let t = Instant::now();
        let cap = Some(plan.partition_cap);
        let mut run = Run::new(&file, out_dir, &params, plan.budget, cap, progress)?;
        let dir = run.dir.clone();
        // Stages other than a partition's take the work directory for themselves.
        let _dir_lock = match stage {
            Stage::Partition(_) => workdir::lock_shared(&dir)?,
            _ => workdir::lock(&dir)?,
        };
        if let workdir::Existing::Different(field, old, new) =
            workdir::inspect(&dir, &run.manifest)?
        {
            return Err(BuildError::PlanMismatch {
                path: dir,
                field,
                old,
                new,
            });
        }
        let missing = |what: String, next: String| BuildError::StageMissing {
            path: dir.clone(),
            missing: what,
            next,
        };
        let out = out_dir.display();
        if !dir.join(PARTITIONS_FILE).exists() {
            let next = format!("`ssdann build plan --out {out} …` again (with --resume)");
            return Err(missing(format!("{PARTITIONS_FILE} (the plan)"), next));
        }
        let parts = run.partition_count()?;
        match stage {
            Stage::Partition(p) => {
                if p >= parts {
                    return Err(BuildError::param(
                        "--part",
                        p,
                        format!("the plan has {parts} partitions: 0..={}", parts.max(1) - 1),
                    ));
                }
                let _part_lock = lock_partition(&dir, p)?;
                let points = workdir::read_ids_count(&workdir::ids_path(&dir, p))?;
                let ran = run.graph(p, parts)?;
                Ok(report(stage, &dir, parts, Some(points), ran, t, None))
            }
            Stage::Merge => {
                let todo: Vec<usize> = (0..parts)
                    .filter(|&p| !graph_path(&dir, p).exists())
                    .collect();
                if let Some(&first) = todo.first() {
                    let list = todo.iter().map(usize::to_string).collect::<Vec<_>>();
                    return Err(missing(
                        format!("partition graphs {} (of {parts})", list.join(", ")),
                        format!(
                            "`ssdann build partition --out {out} --part {first}` (and the others)"
                        ),
                    ));
                }
                let ran = !dir.join(MERGED_FILE).exists();
                run.merge(parts)?;
                Ok(report(stage, &dir, parts, None, ran, t, None))
            }
            Stage::Write => {
                if !dir.join(MERGED_FILE).exists() {
                    let next = format!("`ssdann build merge --out {out}`");
                    return Err(missing(format!("{MERGED_FILE} (the merge)"), next));
                }
                let build = run.write(out_dir, parts)?;
                Ok(report(stage, &dir, parts, None, true, t, Some(build)))
            }
            Stage::Plan => unreachable!("refused above"),
        }
    })
}

/// The exclusive lock of partition `p`'s job: an advisory lock on its `part-XXXX.ids`
/// (opened for writing, as NFS's emulation of `flock` needs; nothing is written).
fn lock_partition(dir: &Path, p: usize) -> Result<File, BuildError> {
    let path = workdir::ids_path(dir, p);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| BuildError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BuildError::PartitionInProgress { path, part: p })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(BuildError::io(&path, e)),
    }
}

fn report(
    stage: Stage,
    dir: &Path,
    partitions: usize,
    points: Option<u64>,
    ran: bool,
    t: Instant,
    build: Option<BuildReport>,
) -> StageReport {
    StageReport {
        stage,
        work_dir: dir.to_path_buf(),
        partitions,
        points,
        ran,
        seconds: t.elapsed().as_secs_f64(),
        peak_rss_bytes: super::rss_bytes().1,
        build,
    }
}
