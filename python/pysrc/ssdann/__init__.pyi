"""Type stubs of ssdann. Shapes: n = points, d = dimension, nq = queries, k = neighbours."""
import os
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

from . import distributed as distributed

import numpy as np
import numpy.typing as npt

__version__: str

VectorArray = Union[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.int8]]

class CorruptIndexError(Exception):
    """An index file failed a checksum or format check (the message names file and field)."""

class IndexLockedError(BlockingIOError):
    """The index directory is open in another handle, in this or another process: one writer
    per directory; any number of ``read_only=True`` handles, but never beside a writer.
    Close the other handle, or open read-only beside other readers. (An ``OSError``.)"""

def build(
    data: Union[str, "os.PathLike[str]", VectorArray],
    out_dir: Union[str, "os.PathLike[str]"],
    *,
    metric: Literal["l2", "ip", "cosine"] = "l2",
    R: int = 64,
    L: int = 100,
    alpha: float = 1.2,
    pq_bytes: Optional[int] = None,
    threads: Optional[int] = None,
    force: bool = False,
    memory_budget_gb: Optional[float] = None,
    resume: bool = False,
    neighbor_codes: bool = False,
    vector_encoding: Optional[Literal["f32", "f16"]] = None,
    max_index_growth: float = 2.0,
    saturate_graph: bool = True,
) -> Dict[str, Any]:
    """Build an index directory from a vector file (.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy)
    or a C-contiguous (n, d) array of float32, uint8 or int8 (float64 is refused: convert with
    ``data.astype(np.float32)``). Releases the GIL. Returns the build report (n, d, pq_bytes,
    seconds per phase, index_bytes, engine_ram_bytes, partitions, memory_estimate_bytes).

    memory_budget_gb (file paths only): RAM the build may use, in GiB. When the one-shot
    build would need more, the build is partitioned (DiskANN §4.3: k-means partitions sized
    to the budget, each point in its 2 nearest, a Vamana graph per partition, merged and
    pruned to R); the file is read row by row, never loaded whole. resume=True continues an
    interrupted budgeted build from its last finished stage (same file and parameters).

    The record layout is chosen from the data: each neighbour's residual PQ code in the node
    records (format 2) and, for f32 data f16 can hold, half-float vectors, where the index
    then takes at most max_index_growth x the bytes of plain records (384-d f32 at R = 64:
    yes; 128-d u8 or f32: no). neighbor_codes=True asks for codes whatever the growth;
    vector_encoding="f32" keeps exact vectors, "f16" asks for half floats. The report's
    neighbor_code_bytes and vector_encoding say what was chosen. Every build path (budgeted,
    staged, Ray) and every update and merge keeps the layout.

    saturate_graph (default True) fills every node's list up to R with the candidates
    RobustPrune's α rule dropped (DiskANN's saturate_graph): a record holds R neighbours
    whatever its degree, so the index does not grow, and each read yields more candidates
    (fewer reads at equal recall). Needs alpha > 1 to have an effect.

    Raises ValueError (bad data or parameter; a budget too small for one partition names the
    minimum; resume with other parameters names the field), FileExistsError (out_dir exists, force=False),
    IndexLockedError (force=True, but a process has the index in out_dir open), OSError (I/O)."""

PathLike = Union[str, "os.PathLike[str]"]
Progress = Optional[Callable[[str], Any]]

def build_plan(
    data: PathLike,
    out_dir: PathLike,
    *,
    memory_budget_gb: float,
    metric: Literal["l2", "ip", "cosine"] = "l2",
    R: int = 64,
    L: int = 100,
    alpha: float = 1.2,
    pq_bytes: Optional[int] = None,
    threads: Optional[int] = None,
    force: bool = False,
    resume: bool = False,
    saturate_graph: bool = True,
    neighbor_codes: bool = False,
    vector_encoding: Optional[Literal["f32", "f16"]] = None,
    max_index_growth: float = 2.0,
    progress: Progress = None,
) -> Dict[str, Any]:
    """Stage 1 of a budgeted build run stage by stage: PQ and the k-means partitions, recorded
    in the work directory beside out_dir. Returns stage, work_dir, partitions (N), seconds,
    peak_rss_bytes. Then build_partition(out_dir, I) for I in 0..N, build_merge, build_write."""

def build_partition(out_dir: PathLike, part: int, *, threads: Optional[int] = None, progress: Progress = None) -> Dict[str, Any]:
    """Stage 2: partition ``part``'s Vamana graph (any order, any machine that sees the work
    directory; a built one returns ran=False). RuntimeError before a plan; IndexLockedError
    while another process builds it."""

def build_merge(out_dir: PathLike, *, threads: Optional[int] = None, progress: Progress = None) -> Dict[str, Any]:
    """Stage 3: the partition graphs merged (RuntimeError names partitions not built yet)."""

def build_write(out_dir: PathLike, *, threads: Optional[int] = None, force: bool = False, progress: Progress = None) -> Dict[str, Any]:
    """Stage 4: the index written into out_dir; ``build`` holds the report of ssdann.build."""

def build_status(out_dir: PathLike) -> Dict[str, Any]:
    """A plan's progress: partitions, graphs_done, merged, and the planned parameters."""

class Index:
    """An open SSD index. Thread-safe; searches release the GIL.

    Fork-safe for searches: a forked child (multiprocessing "fork", DataLoader workers,
    gunicorn --preload) that inherits an Index searches with the same results as the
    parent (it sets up its own I/O rings); updates raise PermissionError there. With the
    "spawn" start method, each worker opens the index itself (``read_only=True`` beside
    other readers)."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        cache_nodes: int = 0,
        io: Literal["io_uring", "pread"] = "io_uring",
        verify_reads: bool = False,
        read_only: bool = False,
        cache_bytes: int = 0,
        cache_samples: int = 0,
        navigation_nodes: Optional[int] = None,
        busy_poll_us: int = 1000,
    ) -> None:
        """Open the index in ``path``. By default the handle may write (insert, delete,
        merge; it also finishes an interrupted merge) and holds the directory's lock
        exclusively. ``read_only=True`` shares the lock with other read-only handles (in
        any process), never writes (an unfinished merge is an error: open read-write once),
        and its updates raise PermissionError.

        Raises IndexLockedError (another handle has the directory open: any handle, for a
        writer; a writer, for a reader), PermissionError (read-only open of an index with an
        interrupted merge), CorruptIndexError, OSError, ValueError (unknown ``io``)."""
    def search(self, q: npt.NDArray[np.float32], k: int, *, L: int = 100, W: int = 4, termination_ratio: Optional[float] = None) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """k nearest neighbours of q (shape (d,), float32): labels (k,) uint64 and distances
        (k,) float32 — squared L2 for "l2", negated inner product for "ip", 1 - cos for
        "cosine" — closest first. ``termination_ratio`` (≥ 1; l2/cosine): stop once the
        closest unexpanded candidate is that many times the k-th best distance (None: the
        index's own ratio, ``default_termination_ratio``; ``float("inf")``: off).
        Raises ValueError for a wrong shape/dtype/dimension, k = 0, L < k, W out of
        1..=1024 or a bad termination_ratio."""
    def batch_search(
        self,
        Q: npt.NDArray[np.float32],
        k: int,
        *,
        L: int = 100,
        W: int = 4,
        threads: Optional[int] = None,
        return_stats: bool = False,
        termination_ratio: Optional[float] = None,
    ) -> Union[Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]], Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32], Dict[str, np.ndarray]]]:
        """Search every row of Q (shape (nq, d), float32; no copy when C-contiguous) on the
        engine's thread pool: labels (nq, k) uint64 and distances (nq, k) float32; with
        return_stats, also per-query stats arrays (sector_reads, hops, cache_hits,
        nodes_expanded, io_wait_us, total_us), which are kept in ``last_stats`` too."""
    def insert(self, labels: "npt.ArrayLike", vectors: npt.NDArray[np.float32]) -> None:
        """Insert (or replace) points: labels (n,) unsigned integers, vectors (n, d) float32.
        Appended to the index's write-ahead log (durable before this returns), then visible
        to every search. Raises ValueError (shape, dtype, dimension, NaN), PermissionError
        (a read-only handle, or an Index inherited by a forked child)."""
    def delete(self, labels: "npt.ArrayLike") -> None:
        """Delete points by label (WAL first). Raises ValueError for a label that is not live,
        PermissionError as insert does."""
    def merge(self) -> Dict[str, Union[int, float]]:
        """Fold the pending inserts and deletes into the SSD index in place (StreamingMerge,
        crash-safe). Searches, inserts and deletes from other threads keep running (updates
        pause only while it writes in place). Returns deleted, inserted, repaired,
        blocks_written, n_slots and seconds. Raises PermissionError as insert does."""
    @property
    def last_stats(self) -> Optional[Dict[str, np.ndarray]]: ...
    @property
    def dim(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def io_backend(self) -> Literal["io_uring", "pread"]:
        """The I/O backend searches use: "pread" when asked for, or when the kernel refuses
        io_uring (one warning is printed then)."""
    @property
    def read_only(self) -> bool:
        """Opened with ``read_only=True``."""
    @property
    def pending(self) -> Dict[str, int]:
        """Updates not merged yet: delta (points in the delta index), tombstones (deleted SSD
        points), wal_records."""
    @property
    def live_count(self) -> int:
        """Points a search can return."""
    @property
    def default_termination_ratio(self) -> Optional[float]:
        """The early-termination ratio of a search with ``termination_ratio=None``: 1 +
        max(1.5 × ``near_error``, 0.15); None on an inner-product index."""
    @property
    def near_error(self) -> Optional[float]:
        """PQ's error on near pairs (99th percentile of (approximate − exact) / d₁₀),
        measured by the build."""
    @property
    def metric(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def R(self) -> int: ...
    @property
    def pq_bytes(self) -> int: ...
    @property
    def centroid(self) -> npt.NDArray[np.float32]:
        """(d,) mean of the points PQ was trained on: routes queries among index parts."""

def read_vectors(path: Union[str, "os.PathLike[str]"], *, mmap: bool = True) -> np.ndarray:
    """(n, d) array of a .fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy file (memory-mapped by default)."""
def write_vectors(path: Union[str, "os.PathLike[str]"], vectors: np.ndarray) -> None:
    """Write (n, d) vectors in the format of the extension (dtype must match it)."""
def read_ground_truth(path: Union[str, "os.PathLike[str]"]) -> Tuple[np.ndarray, np.ndarray]:
    """(ids (nq, k), distances (nq, k) float32) of a .ibin (uint32 ids) or .u64bin file."""
def plot_eval(evals, out=None, *, L: Optional[int] = None, title: Optional[str] = None):
    """Draw `ssdann eval --json` files: recall@k–QPS curve and latency histogram (matplotlib)."""
def recall_at_k(ids: np.ndarray, gt_ids: np.ndarray, k: int, gt_distances: Optional[np.ndarray] = None) -> float:
    """recall@k (big-ann-benchmarks; distance ties counted when gt_distances is given)."""
