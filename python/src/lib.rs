//! Python bindings of ssdann (PyO3, abi3): `ssdann.build`, `ssdann.Index`,
//! `ssdann.CorruptIndexError`, `ssdann.IndexLockedError`. numpy in and out; the GIL is
//! released during build and search; batch search runs on the engine's thread pool.
//!
//! Modules: `index_build` (`ssdann.build`), `errors` (exception types and mapping),
//! `convert` (numpy in and out), `stages` (the budgeted build's stages); `Index` and the
//! module itself are here.
//!
//! # Module order
//!
//! Imports run one way, each module using only those before it (the crate root on top):
//!
//! `errors → convert → index_build → stages`
//!
//! `tools/check-imports.sh` checks this order.
//!
//! Engine errors map to Python exceptions in `engine_err`: a bad query → `ValueError`;
//! I/O → `OSError`; a corrupt or inconsistent index → `CorruptIndexError`; the directory
//! locked by another handle (or `build(..., force=True)` over an index a process has open)
//! → `IndexLockedError` (a `BlockingIOError`, so an `OSError`);
//! an update refused on a read-only handle or in a forked child → `PermissionError`.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use ssdann::engine::{Index as EngineIndex, IoBackend, OpenOptions, SearchParams, SearchStats};
use std::path::PathBuf;
use std::sync::Arc;

mod convert;
mod errors;
mod index_build;
mod stages;
use convert::{as_array, fill_row, labels_arg, query_array, stats_dict};
use errors::{check_index_dir, engine_err, CorruptIndexError, IndexLockedError};

/// The engine's per-query parameters from Python's keywords (the one set every surface takes).
fn params(l: usize, w: usize, termination_ratio: Option<f32>) -> SearchParams {
    SearchParams {
        termination_ratio,
        ..SearchParams::new(l, w)
    }
}

/// An open SSD index: PQ codes in RAM, vectors and graph on the SSD.
///
/// Thread-safe; searches release the GIL. One writer per directory: a second read-write
/// ``Index(path)`` (in this or another process) raises IndexLockedError; any number of
/// ``read_only=True`` handles may be open together, but not beside a writer. An Index
/// inherited by a forked child searches there with the parent's results; its updates
/// raise PermissionError there.
///
/// Parameters
/// ----------
/// path : str or os.PathLike
///     The index directory (made by ``ssdann.build``).
/// cache_nodes : int, default 0
///     Nodes kept in RAM (BFS from the entry point, or see ``cache_samples``): each saves
///     a read when a search expands it; costs about one sector record of RAM per node.
/// cache_bytes : int, default 0
///     RAM for the node cache in bytes: as many whole records as it pays for (16 bytes of
///     index each), when that is more than ``cache_nodes``.
/// cache_samples : int, default 0
///     Choose the cached nodes by how often this many sample searches at open expand them
///     (DiskANN's cache from sample queries; the samples are reconstructions of evenly
///     spaced points) instead of BFS: ~2–5% fewer reads than BFS on minilm-100k, ~5 s more
///     open time for 2,000 samples. 0: BFS.
/// io : {"io_uring", "pread"}, default "io_uring"
///     Read backend; falls back to pread (with one warning) where the kernel refuses io_uring.
/// verify_reads : bool, default False
///     Check every sector's CRC32 on read (a mismatch raises CorruptIndexError).
/// read_only : bool, default False
///     Share the directory with other read-only handles; never write (updates raise
///     PermissionError; an interrupted merge is an error until opened read-write once).
/// navigation_nodes : int or None, default None
///     The navigation graph of entry points: searches start from its nodes nearest the
///     query instead of the medoid (fewer reads on the way down; RAM about
///     nodes × (M + 160) bytes). None: the index's navigation.bin, written by the build (an
///     index built before it gets one of 5% of its points built at open). 0: none.
///     N: N nodes built at open.
/// busy_poll_us : int, default 1000
///     Spin on the io_uring completion queue for up to this many µs per wait before sleeping
///     (0..=10000; 0: off): saves waking the thread after each read, costly on a VM. A wait
///     spins only while no more searches run in the process than the machine has cores.
///
/// Raises
/// ------
/// FileNotFoundError
///     ``path`` does not exist or holds no index.ssd.
/// NotADirectoryError
///     ``path`` is a file.
/// IndexLockedError
///     Another handle has the directory open (any handle, for a writer; a writer, for a
///     reader).
/// CorruptIndexError
///     A file failed a checksum or format check (nothing is changed).
/// PermissionError
///     A read-only open of an index with an interrupted merge.
/// ValueError
///     An unknown ``io``.
///
/// Examples
/// --------
/// >>> index = ssdann.Index("idx")
/// >>> ids, dists = index.batch_search(x[:5], 10, L=100)
/// >>> ids.shape, ids.dtype
/// ((5, 10), dtype('uint64'))
#[pyclass(module = "ssdann")]
struct Index {
    inner: Arc<EngineIndex>,
    last_stats: Option<Py<PyDict>>,
    read_only: bool,
}

#[pymethods]
impl Index {
    #[new]
    #[pyo3(signature = (path, *, cache_nodes = 0, io = "io_uring", verify_reads = false, read_only = false, cache_bytes = 0, cache_samples = 0, navigation_nodes = None, busy_poll_us = ssdann::engine::DEFAULT_BUSY_POLL_US), text_signature = "(path, *, cache_nodes=0, io=\"io_uring\", verify_reads=False, read_only=False, cache_bytes=0, cache_samples=0, navigation_nodes=None, busy_poll_us=1000)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        cache_nodes: usize,
        io: &str,
        verify_reads: bool,
        read_only: bool,
        cache_bytes: u64,
        cache_samples: usize,
        navigation_nodes: Option<usize>,
        busy_poll_us: u32,
    ) -> PyResult<Self> {
        let io: IoBackend = io.parse().map_err(PyValueError::new_err)?;
        check_index_dir(&path)?;
        let opts = OpenOptions {
            cache_nodes,
            cache_bytes,
            cache_policy: if cache_samples > 0 {
                ssdann::engine::CachePolicy::SampleVisits {
                    samples: cache_samples,
                }
            } else {
                ssdann::engine::CachePolicy::Bfs
            },
            io,
            verify_reads,
            read_only,
            navigation_nodes,
            busy_poll_us,
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

    /// The k nearest neighbours of one query (DiskANN beam search).
    ///
    /// Parameters
    /// ----------
    /// q : numpy.ndarray
    ///     One query, shape (d,), float32.
    /// k : int
    ///     Neighbours to return (1..=10000).
    /// L : int, default 100
    ///     Search list size (k..=100000): larger is more accurate and reads more sectors.
    /// W : int, default 4
    ///     Beam width: sectors read per round in one submission (1..=1024).
    /// termination_ratio : float, optional
    ///     Early termination: stop once the closest unexpanded candidate's PQ distance exceeds
    ///     this × the k-th best exact distance found (≥ 1; a finite ratio on l2 and cosine
    ///     indexes only). Fewer reads at large L; too small a ratio caps recall. None: the
    ///     index's own ratio (``default_termination_ratio``, from PQ's error measured by the
    ///     build); ``float("inf")``: off, every one of the L candidates is expanded.
    ///
    /// Returns
    /// -------
    /// ids : numpy.ndarray
    ///     (k,) uint64 labels, closest first; 2**64 - 1 where fewer than k points exist.
    /// distances : numpy.ndarray
    ///     (k,) float32: squared L2 ("l2"), negated inner product ("ip") or 1 - cos
    ///     ("cosine"); inf where the label is 2**64 - 1.
    ///
    /// Raises
    /// ------
    /// ValueError
    ///     A wrong shape, dtype or dimension; NaN; k, L, W or termination_ratio out of range.
    ///
    /// Examples
    /// --------
    /// >>> ids, dists = index.search(x[0], 10)
    /// >>> int(ids[0])
    /// 0
    #[pyo3(signature = (q, k, *, L = 100, W = 4, termination_ratio = None), text_signature = "($self, q, k, *, L=100, W=4, termination_ratio=None)")]
    #[allow(non_snake_case)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: usize,
        L: usize,
        W: usize,
        termination_ratio: Option<f32>,
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
            .allow_threads(|| inner.search(slice, k, &params(L, W, termination_ratio)))
            .map_err(engine_err)?;
        let (mut ids, mut dists) = (vec![0u64; k], vec![0f32; k]);
        fill_row(&hits, k, &mut ids, &mut dists);
        Ok((
            PyArray1::from_vec_bound(py, ids),
            PyArray1::from_vec_bound(py, dists),
        ))
    }

    /// The k nearest neighbours of every row of Q, on the engine's thread pool.
    ///
    /// Parameters
    /// ----------
    /// Q : numpy.ndarray
    ///     Queries, shape (nq, d), float32 (no copy when C-contiguous).
    /// k : int
    ///     Neighbours per query (1..=10000).
    /// L : int, default 100
    ///     Search list size (k..=100000).
    /// W : int, default 4
    ///     Beam width (1..=1024).
    /// termination_ratio : float, optional
    ///     Early termination, as in ``search``. None: the index's own ratio;
    ///     ``float("inf")``: off.
    /// threads : int, optional
    ///     Search threads, 1..=1024 (None: all cores; 0 is refused).
    /// return_stats : bool, default False
    ///     Also return per-query statistics (kept in ``last_stats`` either way).
    ///
    /// Returns
    /// -------
    /// ids : numpy.ndarray
    ///     (nq, k) uint64 labels, closest first (2**64 - 1 pads a row with fewer than k).
    /// distances : numpy.ndarray
    ///     (nq, k) float32, as in ``search``.
    /// stats : dict, only with return_stats=True
    ///     (nq,) arrays: sector_reads, hops, cache_hits, nodes_expanded, io_wait_us (µs),
    ///     total_us (µs).
    ///
    /// Raises
    /// ------
    /// ValueError
    ///     A wrong shape, dtype or dimension; NaN; k, L or W out of range.
    ///
    /// Examples
    /// --------
    /// >>> ids, dists = index.batch_search(x[:100], 10, L=50)
    /// >>> ids.shape
    /// (100, 10)
    #[pyo3(signature = (Q, k, *, L = 100, W = 4, threads = None, return_stats = false, termination_ratio = None), text_signature = "($self, Q, k, *, L=100, W=4, threads=None, return_stats=False, termination_ratio=None)")]
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
        termination_ratio: Option<f32>,
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
        // as_slice() also succeeds on a Fortran-order array (its memory is contiguous, in
        // column order): only a C-order array is used in place; any other is copied row by row.
        let slice = match a.as_slice() {
            Ok(s) if arr.is_c_contiguous() => s, // C-contiguous float32: no copy
            _ => {
                owned = a.as_array().iter().copied().collect::<Vec<f32>>();
                &owned[..]
            }
        };
        let nq = arr.shape()[0];
        let inner = self.inner.clone();
        let res = py
            .allow_threads(|| {
                inner.batch_search(slice, k, &params(L, W, termination_ratio), threads)
            })
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

    /// Insert (or replace) points: logged to the WAL (durable before this returns), then
    /// visible to every search; ``merge()`` later folds them into the SSD index.
    ///
    /// Parameters
    /// ----------
    /// labels : int or sequence of int
    ///     (n,) labels in 0..2**64 (one int for one point); an existing label is replaced.
    /// vectors : array-like
    ///     (n, d) float32, or (d,) for one point.
    ///
    /// Raises
    /// ------
    /// ValueError
    ///     Shape, dtype or dimension; NaN; labels and rows of different counts.
    /// PermissionError
    ///     A read-only handle, or an Index inherited by a forked child.
    /// OSError
    ///     The WAL could not be written (nothing was applied).
    ///
    /// Examples
    /// --------
    /// >>> index.insert([5000, 5001], x[:2] + 0.5)
    /// >>> index.pending["delta"]
    /// 2
    #[pyo3(text_signature = "($self, labels, vectors)")]
    fn insert<'py>(
        &self,
        py: Python<'py>,
        labels: &Bound<'py, PyAny>,
        vectors: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let labels = labels_arg(labels)?;
        // one point may come as a (d,) vector
        let vectors = match as_array(vectors, "vectors")? {
            a if a.ndim() == 1 => a.call_method1("reshape", ((1, -1),))?,
            a => a.into_any(),
        };
        let arr = query_array(&vectors, 2, "vectors")?;
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

    /// Delete points by label: logged to the WAL, then tombstoned (never returned again).
    ///
    /// Parameters
    /// ----------
    /// labels : int or sequence of int
    ///     Labels of live points.
    ///
    /// Raises
    /// ------
    /// ValueError
    ///     A label that is not live (nothing is deleted).
    /// PermissionError
    ///     A read-only handle, or an Index inherited by a forked child.
    ///
    /// Examples
    /// --------
    /// >>> index.delete([3, 4])
    /// >>> index.pending["tombstones"]
    /// 2
    #[pyo3(text_signature = "($self, labels)")]
    fn delete(&self, py: Python<'_>, labels: &Bound<'_, PyAny>) -> PyResult<()> {
        let labels = labels_arg(labels)?;
        let inner = self.inner.clone();
        py.allow_threads(|| inner.delete_batch(&labels))
            .map_err(engine_err)
    }

    /// Fold the pending inserts and deletes into the SSD index in place (FreshDiskANN
    /// StreamingMerge, crash-safe through a journal). Searches from other threads keep
    /// running; updates pause only while it writes in place.
    ///
    /// Returns
    /// -------
    /// dict
    ///     deleted, inserted, repaired (nodes whose lists were patched), blocks_written,
    ///     n_slots, seconds.
    ///
    /// Raises
    /// ------
    /// PermissionError
    ///     A read-only handle, or an Index inherited by a forked child.
    /// OSError
    ///     An I/O error (the index stays at its last committed generation).
    ///
    /// Examples
    /// --------
    /// >>> report = index.merge()
    /// >>> report["inserted"], index.pending["delta"]
    /// (2, 0)
    #[pyo3(text_signature = "($self)")]
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

    /// Per-query statistics of the last batch_search (dict of (nq,) arrays), or None.
    #[getter]
    fn last_stats(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.last_stats.as_ref().map(|d| d.clone_ref(py))
    }
    /// Vector dimension d.
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

    /// default_termination_ratio: the early-termination ratio a search with
    /// ``termination_ratio=None`` uses, 1 + max(1.5 × ``near_error``, 0.15); None (no early
    /// termination) on an inner-product index or one too small to measure.
    #[getter]
    fn default_termination_ratio(&self) -> Option<f32> {
        self.inner.default_termination_ratio()
    }
    /// near_error: PQ's error on near pairs, the 99th percentile of (approximate − exact)
    /// / d₁₀ over near pairs of the index's own points (measured by the build; for an
    /// index built before it was stored, at open). None where not measured.
    #[getter]
    fn near_error(&self) -> Option<f32> {
        self.inner.near_error().map(|e| e.error)
    }
    /// Node slots n on the SSD (live points plus deleted slots not yet reused).
    #[getter]
    fn n(&self) -> usize {
        self.inner.len()
    }
    /// The metric: "l2", "ip" or "cosine".
    #[getter]
    fn metric(&self) -> &'static str {
        self.inner.metric().name()
    }
    /// The stored element type: "float32", "uint8" or "int8" (queries are float32).
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.inner.header().element {
            ssdann::ElementType::F32 => "float32",
            ssdann::ElementType::U8 => "uint8",
            ssdann::ElementType::I8 => "int8",
        }
    }
    /// Maximum graph degree R.
    #[getter]
    #[allow(non_snake_case)]
    fn R(&self) -> u32 {
        self.inner.header().max_degree
    }
    /// PQ bytes per point M held in RAM.
    #[getter]
    fn pq_bytes(&self) -> u32 {
        self.inner.header().pq_m
    }
    /// centroid: the mean of the points PQ was trained on, as a (d,) float32 array (the
    /// vector PQ subtracts before encoding; normalized rows for cosine). The index's data
    /// centroid: ``ssdann.distributed.evaluate`` routes queries to the nearest parts of an
    /// index split by partition with it.
    ///
    /// Raises
    /// ------
    /// CorruptIndexError
    ///     pq_pivots.bin is damaged (named).
    #[getter]
    fn centroid<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let path = self.inner.dir().join(ssdann::layout::pq::PQ_PIVOTS_FILE);
        let pq = ssdann::layout::PqCodebook::read(&path)
            .map_err(|e| errors::layout_err(&e, true))?;
        Ok(PyArray1::from_slice_bound(py, pq.centroid()))
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

/// Runs the ``ssdann`` command-line program (the same code as the ``ssdann`` binary) with
/// ``argv`` (``argv[0]`` is the program name) and returns its exit status: 0 success, 1 a
/// check failed, 2 an error. The GIL is released while it runs. Used by the ``ssdann``
/// console script that ``pip install`` puts on PATH; ``python -m ssdann`` runs it too.
#[pyfunction]
fn _cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.allow_threads(|| ssdann_tools::run(argv))
}

#[pymodule]
fn _ssdann(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // the engine's warnings (recovery notes, I/O fallbacks) on stderr, as from the command
    ssdann_tools::init_logging();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(index_build::build, m)?)?;
    m.add_function(wrap_pyfunction!(stages::build_plan, m)?)?;
    m.add_function(wrap_pyfunction!(stages::build_partition, m)?)?;
    m.add_function(wrap_pyfunction!(stages::build_merge, m)?)?;
    m.add_function(wrap_pyfunction!(stages::build_write, m)?)?;
    m.add_function(wrap_pyfunction!(stages::build_status, m)?)?;
    m.add_function(wrap_pyfunction!(_cli, m)?)?;
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
