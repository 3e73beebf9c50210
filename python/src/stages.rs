//! `ssdann.build_plan`, `build_partition`, `build_merge`, `build_write`, `build_status`: the
//! memory-budgeted build one stage at a time (what `ssdann.distributed.build` runs as Ray
//! tasks), with an optional progress callback.

use crate::errors::build_err;
use crate::index_build::{budget_bytes, graph_params, report_dict};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ssdann::builder::partitioned::{self, Stage, StageReport};
use ssdann::builder::{Phase, Progress};
use ssdann::{BuildParams, Metric};
use std::path::PathBuf;
use std::sync::Mutex;

/// Progress as text lines handed to a Python callable: each phase's start and end, about
/// every 10% of it, and the builder's notes. The callable's own errors are ignored (a
/// progress display must never fail a build).
struct LineProgress {
    callback: Option<PyObject>,
    /// (phase, total, done, last 10% step reported).
    state: Mutex<(Option<Phase>, u64, u64, u64)>,
}

impl LineProgress {
    fn new(callback: Option<PyObject>) -> Self {
        LineProgress {
            callback,
            state: Mutex::new((None, 0, 0, 0)),
        }
    }

    fn say(&self, line: String) {
        if let Some(cb) = &self.callback {
            Python::with_gil(|py| {
                let _ = cb.call1(py, (line,));
            });
        }
    }
}

impl Progress for LineProgress {
    fn start(&self, phase: Phase, total: u64) {
        if let Ok(mut s) = self.state.lock() {
            *s = (Some(phase), total, 0, 0);
        }
        self.say(format!("{}: started ({total})", phase.name()));
    }

    fn advance(&self, n: u64) {
        let line = match self.state.lock() {
            Ok(mut s) => {
                s.2 += n;
                let step = if s.1 == 0 { 10 } else { s.2 * 10 / s.1 };
                if step > s.3 && step < 10 {
                    s.3 = step;
                    s.0.map(|p| format!("{}: {}%", p.name(), step * 10))
                } else {
                    None
                }
            }
            Err(_) => None,
        };
        if let Some(l) = line {
            self.say(l);
        }
    }

    fn finish(&self) {
        let phase = self.state.lock().ok().and_then(|s| s.0);
        if let Some(p) = phase {
            self.say(format!("{}: done", p.name()));
        }
    }

    fn message(&self, msg: &str) {
        self.say(msg.to_string());
    }
}

fn stage_dict<'py>(py: Python<'py>, r: &StageReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    let (name, part) = match r.stage {
        Stage::Plan => ("plan", None),
        Stage::Partition(p) => ("partition", Some(p)),
        Stage::Merge => ("merge", None),
        Stage::Write => ("write", None),
    };
    d.set_item("stage", name)?;
    d.set_item("part", part)?;
    d.set_item("work_dir", r.work_dir.display().to_string())?;
    d.set_item("partitions", r.partitions)?;
    d.set_item("points", r.points)?;
    d.set_item("ran", r.ran)?;
    d.set_item("seconds", r.seconds)?;
    d.set_item("peak_rss_bytes", r.peak_rss_bytes)?;
    if let Some(b) = &r.build {
        d.set_item("build", report_dict(py, b)?)?;
    }
    Ok(d)
}

/// Stage 1 of a memory-budgeted build run stage by stage: PQ, then the k-means partitions.
///
/// Records the input and every parameter in the work directory ``.NAME.partitioned`` beside
/// ``out_dir``; the later stages (:func:`build_partition` for each partition, then
/// :func:`build_merge` and :func:`build_write`) read them from there, in any process on any
/// machine that sees both paths. ``ssdann.distributed.build`` runs them on Ray.
///
/// Parameters
/// ----------
/// data : str or os.PathLike
///     The vector file (.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy; n × d).
/// out_dir : str or os.PathLike
///     The index directory the build will write (must not exist unless ``force=True``).
/// memory_budget_gb : float
///     RAM each stage may use, in GiB: it sizes the partitions (one when everything fits).
/// metric, R, L, alpha, pq_bytes, threads, force, resume, saturate_graph
///     As :func:`ssdann.build` (the partition graphs are saturated, and so is every list the
///     merge prunes, unless ``saturate_graph=False``; recorded in the plan).
/// neighbor_codes, vector_encoding, max_index_growth
///     As :func:`ssdann.build`: the record layout, chosen by :func:`build_write` from these
///     (recorded in the plan). Neighbour codes need their training sample in the budget:
///     chosen by default, the write stage falls back to plain records and says so; asked
///     for (``neighbor_codes=True``), a budget that cannot hold them is refused here.
/// progress : callable, optional
///     Called with one str per progress line (phase starts, every 10%, notes).
///
/// Returns
/// -------
/// dict
///     stage ("plan"), work_dir, partitions (N: run parts 0..N-1), seconds, peak_rss_bytes,
///     ran (True), part and points (None).
///
/// Raises
/// ------
/// ValueError
///     A parameter out of range, or a budget too small (the message names the minimum).
/// FileNotFoundError
///     The data file does not exist.
/// FileExistsError
///     ``out_dir`` exists and ``force=False``.
/// IndexLockedError
///     Another build into ``out_dir`` holds its work directory.
///
/// Examples
/// --------
/// >>> import numpy as np, ssdann
/// >>> rows = np.random.default_rng(0).random((3000, 16), dtype=np.float32)
/// >>> ssdann.write_vectors("staged.fbin", rows)
/// >>> plan = ssdann.build_plan("staged.fbin", "staged", memory_budget_gb=0.0629, R=16, L=32, pq_bytes=8)
/// >>> plan["partitions"] > 1
/// True
#[pyfunction]
#[pyo3(signature = (data, out_dir, *, memory_budget_gb, metric = "l2", R = 64, L = 100, alpha = 1.2, pq_bytes = None, threads = None, force = false, resume = false, saturate_graph = true, neighbor_codes = false, vector_encoding = None, max_index_growth = ssdann::builder::params::DEFAULT_MAX_INDEX_GROWTH, progress = None), text_signature = "(data, out_dir, *, memory_budget_gb, metric=\"l2\", R=64, L=100, alpha=1.2, pq_bytes=None, threads=None, force=False, resume=False, saturate_graph=True, neighbor_codes=False, vector_encoding=None, max_index_growth=2.0, progress=None)")]
#[allow(non_snake_case, clippy::too_many_arguments)]
pub(crate) fn build_plan<'py>(
    py: Python<'py>,
    data: PathBuf,
    out_dir: PathBuf,
    memory_budget_gb: f64,
    metric: &str,
    R: usize,
    L: usize,
    alpha: f32,
    pq_bytes: Option<usize>,
    threads: Option<usize>,
    force: bool,
    resume: bool,
    saturate_graph: bool,
    neighbor_codes: bool,
    vector_encoding: Option<&str>,
    max_index_growth: f64,
    progress: Option<PyObject>,
) -> PyResult<Bound<'py, PyDict>> {
    let params = BuildParams {
        metric: metric.parse::<Metric>().map_err(PyValueError::new_err)?,
        memory_budget_bytes: Some(budget_bytes(memory_budget_gb)?),
        saturate_graph,
        neighbor_codes,
        f16_vectors: crate::index_build::f16_vectors(vector_encoding)?,
        max_index_growth,
        ..graph_params(R, L, alpha, pq_bytes, threads, force, resume)
    };
    let pr = LineProgress::new(progress);
    let rep = py
        .allow_threads(|| partitioned::plan_partitioned(&data, &out_dir, &params, &pr))
        .map_err(build_err)?;
    stage_dict(py, &rep)
}

fn run<'py>(
    py: Python<'py>,
    out_dir: PathBuf,
    stage: Stage,
    threads: Option<usize>,
    force: bool,
    progress: Option<PyObject>,
) -> PyResult<Bound<'py, PyDict>> {
    if threads == Some(0) {
        return Err(PyValueError::new_err(
            "threads = 0: give a number of threads ≥ 1, or None for all cores",
        ));
    }
    let pr = LineProgress::new(progress);
    let rep = py
        .allow_threads(|| partitioned::run_stage(&out_dir, stage, threads, force, &pr))
        .map_err(build_err)?;
    stage_dict(py, &rep)
}

/// Stage 2: the Vamana graph of one partition of a build planned by :func:`build_plan`.
///
/// Partition jobs run side by side in any order and on any machine that sees the work
/// directory at the same path; one whose graph is already built returns at once with
/// ``ran=False``, so a job that died is simply run again.
///
/// Parameters
/// ----------
/// out_dir : str or os.PathLike
///     The ``out_dir`` given to :func:`build_plan`.
/// part : int
///     The partition, 0 ≤ part < the plan's ``partitions``.
/// threads : int, optional
///     Worker threads, ≥ 1 (None: all cores).
/// progress : callable, optional
///     Called with one str per progress line.
///
/// Returns
/// -------
/// dict
///     stage ("partition"), part, points (in this partition), partitions, ran, seconds,
///     peak_rss_bytes (of this process), work_dir.
///
/// Raises
/// ------
/// RuntimeError
///     No plan in ``out_dir`` yet (the message names the command that makes it).
/// ValueError
///     ``part`` out of range; the input changed since the plan (the field is named).
/// IndexLockedError
///     Another process is building this partition, or runs a plan, merge or write.
/// CorruptIndexError
///     A damaged work-directory file (named, with the field).
///
/// Examples
/// --------
/// >>> # after the example of build_plan:
/// >>> [ssdann.build_partition("staged", part, threads=1)["ran"] for part in range(plan["partitions"])][:2]
/// [True, True]
#[pyfunction]
#[pyo3(signature = (out_dir, part, *, threads = None, progress = None))]
pub(crate) fn build_partition(
    py: Python<'_>,
    out_dir: PathBuf,
    part: usize,
    threads: Option<usize>,
    progress: Option<PyObject>,
) -> PyResult<Bound<'_, PyDict>> {
    run(py, out_dir, Stage::Partition(part), threads, false, progress)
}

/// Stage 3: merge the partition graphs of a planned build (every partition must be built).
///
/// Parameters
/// ----------
/// out_dir : str or os.PathLike
///     The ``out_dir`` given to :func:`build_plan`.
/// threads : int, optional
///     Worker threads, ≥ 1 (None: all cores).
/// progress : callable, optional
///     Called with one str per progress line.
///
/// Returns
/// -------
/// dict
///     stage ("merge"), partitions, ran, seconds, peak_rss_bytes, work_dir.
///
/// Raises
/// ------
/// RuntimeError
///     Partitions not built yet (named by number) or no plan.
/// IndexLockedError
///     A partition job or another stage is running.
///
/// Examples
/// --------
/// >>> ssdann.build_merge("staged")["ran"]
/// True
#[pyfunction]
#[pyo3(signature = (out_dir, *, threads = None, progress = None))]
pub(crate) fn build_merge(
    py: Python<'_>,
    out_dir: PathBuf,
    threads: Option<usize>,
    progress: Option<PyObject>,
) -> PyResult<Bound<'_, PyDict>> {
    run(py, out_dir, Stage::Merge, threads, false, progress)
}

/// Stage 4: write the index of a merged build into ``out_dir`` and remove the work
/// directory.
///
/// Parameters
/// ----------
/// out_dir : str or os.PathLike
///     The ``out_dir`` given to :func:`build_plan`.
/// threads : int, optional
///     Worker threads, ≥ 1 (None: all cores).
/// force : bool, default False
///     Replace ``out_dir`` if it is an ssdann index directory or empty.
/// progress : callable, optional
///     Called with one str per progress line.
///
/// Returns
/// -------
/// dict
///     stage ("write"), seconds, peak_rss_bytes, and ``build``: the report
///     :func:`ssdann.build` returns.
///
/// Raises
/// ------
/// RuntimeError
///     The merge is not done yet, or no plan.
/// FileExistsError
///     ``out_dir`` exists and ``force=False``.
///
/// Examples
/// --------
/// >>> ssdann.build_write("staged")["build"]["n"]
/// 3000
#[pyfunction]
#[pyo3(signature = (out_dir, *, threads = None, force = false, progress = None))]
pub(crate) fn build_write(
    py: Python<'_>,
    out_dir: PathBuf,
    threads: Option<usize>,
    force: bool,
    progress: Option<PyObject>,
) -> PyResult<Bound<'_, PyDict>> {
    run(py, out_dir, Stage::Write, threads, force, progress)
}

/// How far a build planned into ``out_dir`` has come.
///
/// Parameters
/// ----------
/// out_dir : str or os.PathLike
///     The ``out_dir`` given to :func:`build_plan`.
///
/// Returns
/// -------
/// dict
///     work_dir, data (the input's path), partitions, sizes (points per partition),
///     graphs_done (list of built partitions), merged (bool), memory_budget_bytes, R, L, alpha, pq_bytes, metric.
///
/// Raises
/// ------
/// RuntimeError
///     No plan in ``out_dir``.
///
/// Examples
/// --------
/// >>> status = ssdann.build_status("staged")  # after build_plan, before build_write
/// >>> status["graphs_done"], status["merged"]
/// ([], False)
#[pyfunction]
pub(crate) fn build_status(py: Python<'_>, out_dir: PathBuf) -> PyResult<Bound<'_, PyDict>> {
    let s = partitioned::plan_status(&out_dir).map_err(build_err)?;
    let d = PyDict::new_bound(py);
    let p = &s.plan.params;
    d.set_item("work_dir", s.plan.work_dir.display().to_string())?;
    d.set_item("data", s.plan.data.display().to_string())?;
    d.set_item("partitions", s.partitions)?;
    d.set_item("sizes", s.sizes.clone())?;
    d.set_item("graphs_done", s.graphs_done.clone())?;
    d.set_item("merged", s.merged)?;
    d.set_item("memory_budget_bytes", s.plan.budget)?;
    d.set_item("R", p.max_degree)?;
    d.set_item("L", p.build_l)?;
    d.set_item("alpha", p.alpha)?;
    d.set_item("pq_bytes", p.pq_bytes)?;
    d.set_item("metric", p.metric.to_string())?;
    Ok(d)
}
