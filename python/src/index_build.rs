//! `ssdann.build`: a vector file or any array-like to an index directory, and its report.

use crate::convert::as_array;
use crate::errors::{build_err, dtype_error, dtype_name};
use numpy::{PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ssdann::{BuildParams, Metric, NoProgress};
use std::path::PathBuf;

/// A phase name as a plain snake_case key: "Vamana pass 1 (α=1)" → "vamana_pass_1_alpha_1".
fn snake_key(name: &str) -> String {
    let mut out = String::new();
    for c in name.replace('α', "alpha").chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

pub(crate) fn report_dict<'py>(py: Python<'py>, r: &ssdann::BuildReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item("n", r.n)?;
    d.set_item("dim", r.dim)?;
    d.set_item("pq_bytes", r.pq_m)?;
    d.set_item("neighbor_code_bytes", r.nbr_code_m)?;
    let enc = if r.f16_vectors { "f16".to_string() } else { r.element.to_string() };
    d.set_item("vector_encoding", enc)?;
    d.set_item("index_bytes", r.index_bytes)?;
    d.set_item("engine_ram_bytes", r.engine_ram_bytes)?;
    d.set_item("mean_degree", r.mean_degree)?;
    d.set_item("partitions", r.partitions)?;
    d.set_item("memory_estimate_bytes", r.memory_estimate_bytes)?;
    for (phase, t) in &r.phases {
        d.set_item(
            format!("seconds_{}", snake_key(&phase.name())),
            t.as_secs_f64(),
        )?;
    }
    Ok(d)
}

/// The build parameters every build function takes alike (the rest at their defaults).
#[allow(non_snake_case)]
pub(crate) fn graph_params(
    R: usize,
    L: usize,
    alpha: f32,
    pq_bytes: Option<usize>,
    threads: Option<usize>,
    force: bool,
    resume: bool,
) -> BuildParams {
    BuildParams {
        max_degree: R,
        build_l: L,
        alpha,
        pq_bytes,
        threads,
        force,
        resume,
        ..Default::default()
    }
}

/// `vector_encoding` as [`BuildParams::f16_vectors`]: None (the builder chooses), "f32"
/// (exact vectors) or "f16"; ValueError otherwise.
pub(crate) fn f16_vectors(vector_encoding: Option<&str>) -> PyResult<Option<bool>> {
    match vector_encoding {
        None => Ok(None),
        Some("f32") => Ok(Some(false)),
        Some("f16") => Ok(Some(true)),
        Some(other) => Err(PyValueError::new_err(format!(
            "vector_encoding = {other:?}: expected \"f32\" or \"f16\""
        ))),
    }
}

/// `memory_budget_gb` in bytes; ValueError outside (0, 1e6] GiB.
pub(crate) fn budget_bytes(g: f64) -> PyResult<u64> {
    if g.is_finite() && g > 0.0 && g <= 1e6 {
        Ok((g * (1u64 << 30) as f64) as u64)
    } else {
        Err(PyValueError::new_err(format!(
            "memory_budget_gb = {g}: must be a number of GiB in (0, 1000000]"
        )))
    }
}

/// Build an index directory: PQ training, a Vamana graph, and the sector file.
///
/// Parameters
/// ----------
/// data : str, os.PathLike or array-like
///     A vector file (.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy; n × d), or an (n, d) array of
///     float32, uint8 or int8 — any strides (copied to C order when needed) or anything
///     ``numpy.asarray`` takes. Other dtypes are refused, never converted: float64 (what a
///     list of Python floats becomes) names ``data.astype(np.float32)``. The same rule
///     holds for queries and inserted vectors (float32).
/// out_dir : str or os.PathLike
///     The index directory to create. It must not exist unless ``force=True``.
/// metric : {"l2", "ip", "cosine"}, default "l2"
///     l2 = squared Euclidean; ip = inner product (larger is closer); cosine (float32 only).
/// R : int, default 64
///     Maximum graph degree: more edges, better recall, bigger sector records.
/// L : int, default 100
///     Build search list size (≥ R): larger builds slower and gives a better graph.
/// alpha : float, default 1.2
///     RobustPrune α of the second pass (≥ 1): larger keeps longer edges, fewer hops.
/// pq_bytes : int, optional
///     PQ bytes per vector M (1..=d): the RAM an open index holds per point, and how well
///     searches rank candidates before reading them (more bytes, fewer reads). Default:
///     1/8 of the raw vector bytes and at least d/4: d/2 for float32, d/4 for uint8/int8.
/// threads : int, optional
///     Worker threads, ≥ 1 (None: all cores; 0 is refused).
/// force : bool, default False
///     Replace ``out_dir`` if it is an ssdann index directory or empty; anything else is
///     refused, never deleted.
/// memory_budget_gb : float, optional
///     RAM the build may use, in GiB (file paths only; the file is read row by row). When
///     the one-shot build would need more, the build is partitioned (DiskANN §4.3).
/// resume : bool, default False
///     Continue an interrupted memory-budgeted build from its last finished stage.
/// neighbor_codes : bool, default False
///     Always store each neighbour's residual PQ code in the node records (format 2): searches
///     rank candidates about as well as with M + M₂ PQ bytes while RAM still holds M per
///     point, so they read fewer sectors at equal recall (0.75× on the 10K test set). Records
///     grow to one per 4 KB sector (about 2× the disk on 384-d float32). They pay only
///     where a record already fills most of a sector: on 128-d uint8 (ten records a sector
///     without them) the index grows ~9× and reads no fewer sectors. Budgeted builds
///     write them too; inserts, deletes and merges maintain them. False
///     leaves the choice to ``max_index_growth``.
/// vector_encoding : {"f32", "f16"}, optional
///     How records store float32 vectors: exactly, or as IEEE half floats (half the bytes:
///     with neighbour codes the codes grow from 31 to 43 bytes on 384-d, R = 64). Searches
///     then rank by the f16 vector's distance. float32 data only; merges write f16 records.
///     None (default): f16 where the builder chooses neighbour codes, else exact.
/// max_index_growth : float, default 2.0
///     The disk-bytes ↔ reads trade (1..=64): the builder stores neighbour codes (with f16
///     vectors for float32 data) when the index then takes at most this many times the
///     bytes per point of plain records. 384-d float32, R = 64: growth 2, chosen by the
///     default (~0.7× the reads at recall 0.95); 128-d uint8: growth 10, not chosen. 1 =
///     only where they cost no disk. The report's ``neighbor_code_bytes`` and
///     ``vector_encoding`` say what was chosen; a ``memory_budget_gb`` build chooses alike
///     (plain records when the codes do not fit its budget).
/// saturate_graph : bool, default True
///     Fill every node's list up to R with the candidates RobustPrune's α rule dropped,
///     closest first (DiskANN's saturate_graph). A record holds R neighbours whatever its
///     degree, so the index does not grow; each read yields more candidates, so searches
///     read fewer sectors at equal recall (0.78× on a 128-d u8 set, 0.93–0.97× on 384-d
///     float32), and each expansion costs more ADC. Needs alpha > 1. Budgeted builds and
///     merges keep it; ``False`` builds the unsaturated graph.
///
/// Returns
/// -------
/// dict
///     The build report: n, dim, pq_bytes, index_bytes, engine_ram_bytes, mean_degree,
///     partitions, memory_estimate_bytes, and seconds_<phase> per phase (snake_case keys).
///
/// Raises
/// ------
/// ValueError
///     Bad data (NaN, shape, dtype) or parameter (the message names it); a budget too
///     small names the minimum.
/// FileNotFoundError
///     The data file does not exist.
/// FileExistsError
///     ``out_dir`` exists and ``force=False``.
/// IndexLockedError
///     ``force=True`` but a process has the index in ``out_dir`` open.
/// OSError
///     Any other I/O error (the message names the file).
///
/// Examples
/// --------
/// >>> import numpy as np, ssdann
/// >>> x = np.random.default_rng(0).random((2000, 32), dtype=np.float32)
/// >>> report = ssdann.build(x, "idx", R=32, L=64, pq_bytes=8)
/// >>> report["n"], report["dim"]
/// (2000, 32)
#[pyfunction]
#[pyo3(signature = (data, out_dir, *, metric = "l2", R = 64, L = 100, alpha = 1.2, pq_bytes = None, threads = None, force = false, memory_budget_gb = None, resume = false, neighbor_codes = false, vector_encoding = None, max_index_growth = ssdann::builder::params::DEFAULT_MAX_INDEX_GROWTH, saturate_graph = true), text_signature = "(data, out_dir, *, metric=\"l2\", R=64, L=100, alpha=1.2, pq_bytes=None, threads=None, force=False, memory_budget_gb=None, resume=False, neighbor_codes=False, vector_encoding=None, max_index_growth=2.0, saturate_graph=True)")]
#[allow(non_snake_case, clippy::too_many_arguments)]
pub(crate) fn build<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    out_dir: PathBuf,
    metric: &str,
    R: usize,
    L: usize,
    alpha: f32,
    pq_bytes: Option<usize>,
    threads: Option<usize>,
    force: bool,
    memory_budget_gb: Option<f64>,
    resume: bool,
    neighbor_codes: bool,
    vector_encoding: Option<&str>,
    max_index_growth: f64,
    saturate_graph: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let metric: Metric = metric.parse().map_err(PyValueError::new_err)?;
    let f16_vectors = f16_vectors(vector_encoding)?;
    let memory_budget_bytes = memory_budget_gb.map(budget_bytes).transpose()?;
    if resume && memory_budget_bytes.is_none() {
        return Err(PyValueError::new_err(
            "resume=True continues a memory-budgeted build: pass memory_budget_gb too",
        ));
    }
    let params = BuildParams {
        metric,
        memory_budget_bytes,
        neighbor_codes,
        f16_vectors,
        max_index_growth,
        saturate_graph,
        ..graph_params(R, L, alpha, pq_bytes, threads, force, resume)
    };
    // Not a path: any array-like, made C-contiguous (a copy only when it is not already).
    let converted;
    let data = if data.extract::<PathBuf>().is_err() {
        let np = py.import_bound("numpy")?;
        converted = np
            .getattr("ascontiguousarray")?
            .call1((as_array(data, "data")?,))?;
        &converted
    } else {
        data
    };
    if let Ok(arr) = data.downcast::<PyUntypedArray>() {
        if memory_budget_bytes.is_some() {
            return Err(PyValueError::new_err(
                "memory_budget_gb applies to a build from a file path (the file is read row by row); an in-memory array is already in RAM",
            ));
        }
        if arr.ndim() != 2 {
            return Err(PyValueError::new_err(format!(
                "data: expected a 2-D (n, d) array, got {} dimension(s)",
                arr.ndim()
            )));
        }
        if !arr.is_c_contiguous() {
            return Err(PyValueError::new_err(
                "data: the array must be C-contiguous (use np.ascontiguousarray(data))",
            ));
        }
        let d = arr.shape()[1];
        macro_rules! go {
            ($t:ty) => {{
                let a = arr.downcast::<PyArray2<$t>>()?.readonly();
                let slice = a
                    .as_slice()
                    .map_err(|e| PyValueError::new_err(format!("data: {e}")))?;
                let rep = py
                    .allow_threads(|| {
                        ssdann::builder::build_from_vectors::<$t>(
                            slice,
                            d,
                            &out_dir,
                            &params,
                            &NoProgress,
                        )
                    })
                    .map_err(build_err)?;
                return report_dict(py, &rep);
            }};
        }
        let dt = dtype_name(arr);
        match dt.as_str() {
            "float32" => go!(f32),
            "uint8" => go!(u8),
            "int8" => go!(i8),
            _ => return Err(dtype_error("data", &dt, "float32, uint8 or int8")),
        }
    }
    let path: PathBuf = data.extract().map_err(|_| {
        PyValueError::new_err("data: expected a path (str or os.PathLike) or a 2-D numpy array")
    })?;
    let rep = py
        .allow_threads(|| ssdann::build_index(&path, &out_dir, &params, &NoProgress))
        .map_err(build_err)?;
    report_dict(py, &rep)
}
