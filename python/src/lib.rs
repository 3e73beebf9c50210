//! Python bindings of ssdann (PyO3, abi3): `ssdann.build`, `ssdann.Index`,
//! `ssdann.CorruptIndexError`, `ssdann.IndexLockedError`. numpy in and out; the GIL is
//! released during build and search; batch search runs on the engine's thread pool.
//!
//! Engine errors map to Python exceptions in `engine_err`: a bad query → `ValueError`;
//! I/O → `OSError`; a corrupt or inconsistent index → `CorruptIndexError`; the directory
//! locked by another handle (or `build(..., force=True)` over an index a process has open)
//! → `IndexLockedError` (a `BlockingIOError`, so an `OSError`);
//! an update refused on a read-only handle or in a forked child → `PermissionError`.

use numpy::{
    PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyBlockingIOError, PyException, PyFileExistsError, PyOSError, PyPermissionError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ssdann::engine::{
    Index as EngineIndex, IoBackend, Neighbor, OpenOptions, SearchParams, SearchStats,
};
use ssdann::{BuildError, BuildParams, EngineError, LayoutError, Metric, NoProgress};
use std::path::PathBuf;
use std::sync::Arc;

create_exception!(
    _ssdann,
    CorruptIndexError,
    PyException,
    "An index file failed a checksum or format check."
);

create_exception!(
    _ssdann,
    IndexLockedError,
    PyBlockingIOError,
    "The index directory is open in another handle (this or another process): one writer \
     per directory, any number of read_only=True handles but never beside a writer."
);

fn layout_err(e: &LayoutError, index_side: bool) -> PyErr {
    let msg = e.to_string();
    match e {
        LayoutError::Io { .. } => PyOSError::new_err(msg),
        LayoutError::ChecksumMismatch { .. } | LayoutError::Corrupt { .. } => {
            CorruptIndexError::new_err(msg)
        }
        LayoutError::SizeMismatch { .. } | LayoutError::InvalidField { .. } if index_side => {
            CorruptIndexError::new_err(msg)
        }
        _ => PyValueError::new_err(msg),
    }
}

fn engine_err(e: EngineError) -> PyErr {
    match &e {
        EngineError::Layout(l) => layout_err(l, true),
        EngineError::Io { .. } => PyOSError::new_err(e.to_string()),
        EngineError::Inconsistent { .. } => CorruptIndexError::new_err(e.to_string()),
        EngineError::InvalidQuery { .. } => PyValueError::new_err(e.to_string()),
        EngineError::Locked { .. } => IndexLockedError::new_err(e.to_string()),
        EngineError::NotAllowed { .. } => PyPermissionError::new_err(e.to_string()),
        _ => PyException::new_err(e.to_string()),
    }
}

fn build_err(e: BuildError) -> PyErr {
    match &e {
        BuildError::Layout(l) => layout_err(l, false),
        BuildError::OutputExists { .. } => PyFileExistsError::new_err(e.to_string()),
        BuildError::InUse { .. } | BuildError::BuildInProgress { .. } => {
            IndexLockedError::new_err(e.to_string())
        }
        BuildError::Io { .. } => PyOSError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

/// Refuses arrays of the wrong dtype with a message that says how to convert.
fn dtype_error(what: &str, found: &str, allowed: &str) -> PyErr {
    let hint = if found == "float64" {
        " (convert with .astype(np.float32); ssdann never changes precision silently)"
    } else {
        ""
    };
    PyValueError::new_err(format!(
        "{what}: dtype {found} is not supported; expected {allowed}{hint}"
    ))
}

/// numpy's name of the array's dtype ("float32", "uint8", "float64", ...).
fn dtype_name(arr: &Bound<'_, PyUntypedArray>) -> String {
    arr.dtype()
        .str()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn report_dict<'py>(py: Python<'py>, r: &ssdann::BuildReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item("n", r.n)?;
    d.set_item("dim", r.dim)?;
    d.set_item("pq_bytes", r.pq_m)?;
    d.set_item("index_bytes", r.index_bytes)?;
    d.set_item("engine_ram_bytes", r.engine_ram_bytes)?;
    d.set_item("mean_degree", r.mean_degree)?;
    d.set_item("partitions", r.partitions)?;
    d.set_item("memory_estimate_bytes", r.memory_estimate_bytes)?;
    for (phase, t) in &r.phases {
        d.set_item(
            format!(
                "seconds_{}",
                phase
                    .name()
                    .replace([' ', '(', ')', '=', '+'], "_")
                    .trim_matches('_')
            ),
            t.as_secs_f64(),
        )?;
    }
    Ok(d)
}

/// build(data, out_dir, *, metric="l2", R=64, L=100, alpha=1.2, pq_bytes=None, threads=None, force=False, memory_budget_gb=None, resume=False)
#[pyfunction]
#[pyo3(signature = (data, out_dir, *, metric = "l2", R = 64, L = 100, alpha = 1.2, pq_bytes = None, threads = None, force = false, memory_budget_gb = None, resume = false))]
#[allow(non_snake_case, clippy::too_many_arguments)]
fn build<'py>(
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
) -> PyResult<Bound<'py, PyDict>> {
    let metric: Metric = metric.parse().map_err(PyValueError::new_err)?;
    let memory_budget_bytes = match memory_budget_gb {
        None => None,
        Some(g) if g.is_finite() && g > 0.0 && g <= 1e6 => Some((g * (1u64 << 30) as f64) as u64),
        Some(g) => {
            return Err(PyValueError::new_err(format!(
                "memory_budget_gb = {g}: must be a number of GiB in (0, 1000000]"
            )))
        }
    };
    if resume && memory_budget_bytes.is_none() {
        return Err(PyValueError::new_err(
            "resume=True continues a memory-budgeted build: pass memory_budget_gb too",
        ));
    }
    let params = BuildParams {
        metric,
        max_degree: R,
        build_l: L,
        alpha,
        pq_bytes,
        threads,
        force,
        memory_budget_bytes,
        resume,
        ..Default::default()
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

/// An open SSD index (see the .pyi stub for the documentation).
#[pyclass(module = "ssdann")]
struct Index {
    inner: Arc<EngineIndex>,
    last_stats: Option<Py<PyDict>>,
    read_only: bool,
}

fn stats_dict<'py>(py: Python<'py>, stats: &[SearchStats]) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new_bound(py);
    d.set_item(
        "sector_reads",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.sector_reads)),
    )?;
    d.set_item(
        "hops",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.hops)),
    )?;
    d.set_item(
        "cache_hits",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.cache_hits)),
    )?;
    d.set_item(
        "nodes_expanded",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.nodes_expanded)),
    )?;
    d.set_item(
        "io_wait_us",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.io_wait_us)),
    )?;
    d.set_item(
        "total_us",
        PyArray1::from_iter_bound(py, stats.iter().map(|s| s.total_us)),
    )?;
    Ok(d)
}

fn fill_row(hits: &[Neighbor], k: usize, ids: &mut [u64], dists: &mut [f32]) {
    for j in 0..k {
        match hits.get(j) {
            Some(h) => {
                ids[j] = h.id;
                dists[j] = h.distance;
            }
            None => {
                ids[j] = u64::MAX;
                dists[j] = f32::INFINITY;
            }
        }
    }
}

fn query_array<'py>(
    obj: &Bound<'py, PyAny>,
    ndim: usize,
    what: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let arr = obj
        .downcast::<PyUntypedArray>()
        .map_err(|_| PyValueError::new_err(format!("{what}: expected a numpy array of float32")))?;
    if arr.ndim() != ndim {
        let shape = if ndim == 1 { "(d,)" } else { "(nq, d)" };
        return Err(PyValueError::new_err(format!(
            "{what}: expected shape {shape}, got {:?}",
            arr.shape()
        )));
    }
    let dt = dtype_name(arr);
    if dt != "float32" {
        return Err(dtype_error(what, &dt, "float32"));
    }
    Ok(arr.clone())
}

#[pymethods]
impl Index {
    #[new]
    #[pyo3(signature = (path, *, cache_nodes = 0, io = "io_uring", verify_reads = false, read_only = false))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        cache_nodes: usize,
        io: &str,
        verify_reads: bool,
        read_only: bool,
    ) -> PyResult<Self> {
        let io: IoBackend = io.parse().map_err(PyValueError::new_err)?;
        let opts = OpenOptions {
            cache_nodes,
            io,
            verify_reads,
            read_only,
            ..Default::default()
        };
        let inner = py
            .allow_threads(|| EngineIndex::open(&path, opts))
            .map_err(engine_err)?;
        Ok(Index {
            inner: Arc::new(inner),
            last_stats: None,
            read_only,
        })
    }

    /// search(q, k, *, L=100, W=4) -> (ids (k,) uint64, distances (k,) float32)
    #[pyo3(signature = (q, k, *, L = 100, W = 4))]
    #[allow(non_snake_case)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: usize,
        L: usize,
        W: usize,
    ) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>)> {
        let arr = query_array(q, 1, "q")?;
        let a = arr.downcast::<PyArray1<f32>>()?.readonly();
        let owned;
        let slice = match a.as_slice() {
            Ok(s) => s,
            Err(_) => {
                owned = a.as_array().to_vec();
                &owned[..]
            }
        };
        let inner = self.inner.clone();
        let hits = py
            .allow_threads(|| inner.search(slice, k, &SearchParams { l: L, w: W }))
            .map_err(engine_err)?;
        let (mut ids, mut dists) = (vec![0u64; k], vec![0f32; k]);
        fill_row(&hits, k, &mut ids, &mut dists);
        Ok((
            PyArray1::from_vec_bound(py, ids),
            PyArray1::from_vec_bound(py, dists),
        ))
    }

    /// batch_search(Q, k, *, L=100, W=4, threads=None, return_stats=False)
    #[pyo3(signature = (Q, k, *, L = 100, W = 4, threads = None, return_stats = false))]
    #[allow(non_snake_case, clippy::too_many_arguments)]
    fn batch_search<'py>(
        &mut self,
        py: Python<'py>,
        Q: &Bound<'py, PyAny>,
        k: usize,
        L: usize,
        W: usize,
        threads: Option<usize>,
        return_stats: bool,
    ) -> PyResult<PyObject> {
        let arr = query_array(Q, 2, "Q")?;
        if arr.shape()[1] != self.inner.dim() {
            return Err(PyValueError::new_err(format!(
                "Q: queries have d = {} but the index has d = {}",
                arr.shape()[1],
                self.inner.dim()
            )));
        }
        let a = arr.downcast::<PyArray2<f32>>()?.readonly();
        let owned;
        let slice = match a.as_slice() {
            Ok(s) => s, // C-contiguous float32: no copy
            Err(_) => {
                owned = a.as_array().iter().copied().collect::<Vec<f32>>();
                &owned[..]
            }
        };
        let nq = arr.shape()[0];
        let inner = self.inner.clone();
        let res = py
            .allow_threads(|| inner.batch_search(slice, k, &SearchParams { l: L, w: W }, threads))
            .map_err(engine_err)?;
        let (mut ids, mut dists) = (vec![0u64; nq * k], vec![0f32; nq * k]);
        for (i, (hits, _)) in res.iter().enumerate() {
            fill_row(
                hits,
                k,
                &mut ids[i * k..(i + 1) * k],
                &mut dists[i * k..(i + 1) * k],
            );
        }
        let ids = PyArray1::from_vec_bound(py, ids).reshape([nq, k])?;
        let dists = PyArray1::from_vec_bound(py, dists).reshape([nq, k])?;
        let stats: Vec<SearchStats> = res.iter().map(|r| r.1).collect();
        let sd = stats_dict(py, &stats)?;
        self.last_stats = Some(sd.clone().unbind());
        if return_stats {
            Ok((ids, dists, sd).into_py(py))
        } else {
            Ok((ids, dists).into_py(py))
        }
    }

    /// insert(labels, vectors): labels (n,) uint64-convertible, vectors (n, d) float32.
    /// Logged to the WAL, then visible to searches. PermissionError on a read-only handle or
    /// in a forked child.
    fn insert<'py>(
        &self,
        py: Python<'py>,
        labels: Vec<u64>,
        vectors: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let arr = query_array(vectors, 2, "vectors")?;
        let (n, d) = (arr.shape()[0], arr.shape()[1]);
        if n != labels.len() {
            return Err(PyValueError::new_err(format!(
                "vectors: {n} rows but {} labels",
                labels.len()
            )));
        }
        if d != self.inner.dim() {
            return Err(PyValueError::new_err(format!(
                "vectors: d = {d} but the index has d = {}",
                self.inner.dim()
            )));
        }
        let a = arr.downcast::<PyArray2<f32>>()?.readonly();
        let v: Vec<f32> = a.as_array().iter().copied().collect();
        let inner = self.inner.clone();
        py.allow_threads(|| {
            let items: Vec<(u64, &[f32])> = labels
                .iter()
                .enumerate()
                .map(|(i, &l)| (l, &v[i * d..(i + 1) * d]))
                .collect();
            inner.insert_batch(&items)
        })
        .map_err(engine_err)
    }

    /// delete(labels): tombstones the points with these labels (logged to the WAL first).
    /// PermissionError on a read-only handle or in a forked child.
    fn delete(&self, py: Python<'_>, labels: Vec<u64>) -> PyResult<()> {
        let inner = self.inner.clone();
        py.allow_threads(|| inner.delete_batch(&labels))
            .map_err(engine_err)
    }

    /// merge() -> dict: folds the pending inserts and deletes into the SSD index in place
    /// (StreamingMerge); searches from other threads keep running meanwhile. Returns what it
    /// did: deleted, inserted, repaired, blocks_written, n_slots, seconds. PermissionError on a
    /// read-only handle or in a forked child.
    fn merge<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.inner.clone();
        let r = py
            .allow_threads(|| inner.merge(&ssdann::engine::MergeOptions::default()))
            .map_err(engine_err)?;
        let d = PyDict::new_bound(py);
        d.set_item("deleted", r.deleted)?;
        d.set_item("inserted", r.inserted)?;
        d.set_item("repaired", r.repaired)?;
        d.set_item("blocks_written", r.blocks_written)?;
        d.set_item("n_slots", r.n_slots)?;
        d.set_item("seconds", r.seconds)?;
        Ok(d)
    }

    #[getter]
    fn last_stats(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.last_stats.as_ref().map(|d| d.clone_ref(py))
    }
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    /// pending: {"delta": points in the delta index, "tombstones": deleted SSD points,
    /// "wal_records": WAL records} not merged yet.
    #[getter]
    fn pending<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (delta, tombstones, wal) = self.inner.pending();
        let d = PyDict::new_bound(py);
        d.set_item("delta", delta)?;
        d.set_item("tombstones", tombstones)?;
        d.set_item("wal_records", wal)?;
        Ok(d)
    }

    /// live_count: points a search can return (SSD points not deleted + the delta's).
    #[getter]
    fn live_count(&self) -> usize {
        self.inner.live_count()
    }

    /// io_backend: the I/O backend searches use: "io_uring", or "pread" (asked for, or the
    /// fallback where the kernel refuses io_uring).
    #[getter]
    fn io_backend(&self) -> &'static str {
        self.inner.io_backend_name()
    }

    /// read_only: opened with read_only=True (inserts, deletes and merges raise
    /// PermissionError).
    #[getter]
    fn read_only(&self) -> bool {
        self.read_only
    }

    #[getter]
    fn n(&self) -> usize {
        self.inner.len()
    }
    #[getter]
    fn metric(&self) -> &'static str {
        self.inner.metric().name()
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.inner.header().element {
            ssdann::ElementType::F32 => "float32",
            ssdann::ElementType::U8 => "uint8",
            ssdann::ElementType::I8 => "int8",
        }
    }
    #[getter]
    #[allow(non_snake_case)]
    fn R(&self) -> u32 {
        self.inner.header().max_degree
    }
    #[getter]
    fn pq_bytes(&self) -> u32 {
        self.inner.header().pq_m
    }
    fn __repr__(&self) -> String {
        format!(
            "ssdann.Index(n={}, dim={}, metric={}, dtype={}, R={}, pq_bytes={})",
            self.n(),
            self.dim(),
            self.metric(),
            self.dtype(),
            self.R(),
            self.pq_bytes()
        )
    }
}

#[pymodule]
fn _ssdann(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_class::<Index>()?;
    m.add(
        "CorruptIndexError",
        m.py().get_type_bound::<CorruptIndexError>(),
    )?;
    m.add(
        "IndexLockedError",
        m.py().get_type_bound::<IndexLockedError>(),
    )?;
    Ok(())
}
