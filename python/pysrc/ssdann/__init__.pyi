"""Type stubs of ssdann. Shapes: n = points, d = dimension, nq = queries, k = neighbours."""
import os
from typing import Dict, Literal, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

VectorArray = Union[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.int8]]

class CorruptIndexError(Exception):
    """An index file failed a checksum or format check (the message names file and field)."""

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
) -> Dict[str, float]:
    """Build an index directory from a vector file (.fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy)
    or a C-contiguous (n, d) array of float32, uint8 or int8 (float64 is refused: convert with
    ``data.astype(np.float32)``). Releases the GIL. Returns the build report (n, d, pq_bytes,
    seconds per phase, index_bytes, engine_ram_bytes).

    Raises ValueError (bad data or parameter), FileExistsError (out_dir exists, force=False),
    OSError (I/O)."""

class Index:
    """An open SSD index. Thread-safe; searches release the GIL."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        *,
        cache_nodes: int = 0,
        io: Literal["io_uring", "pread"] = "io_uring",
        verify_reads: bool = False,
    ) -> None:
        """Open the index in ``path``. Raises OSError, CorruptIndexError."""
    def search(self, q: npt.NDArray[np.float32], k: int, *, L: int = 100, W: int = 4) -> Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        """k nearest neighbours of q (shape (d,), float32): labels (k,) uint64 and distances
        (k,) float32 — squared L2 for "l2", negated inner product for "ip", 1 - cos for
        "cosine" — closest first. Raises ValueError for a wrong shape/dtype/dimension, k = 0,
        L < k or W out of 1..=16."""
    def batch_search(
        self,
        Q: npt.NDArray[np.float32],
        k: int,
        *,
        L: int = 100,
        W: int = 4,
        threads: Optional[int] = None,
        return_stats: bool = False,
    ) -> Union[Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]], Tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32], Dict[str, np.ndarray]]]:
        """Search every row of Q (shape (nq, d), float32; no copy when C-contiguous) on the
        engine's thread pool: labels (nq, k) uint64 and distances (nq, k) float32; with
        return_stats, also per-query stats arrays (sector_reads, hops, cache_hits,
        nodes_expanded, io_wait_us, total_us), which are kept in ``last_stats`` too."""
    def insert(self, labels: "npt.ArrayLike", vectors: npt.NDArray[np.float32]) -> None:
        """Insert (or replace) points: labels (n,) unsigned integers, vectors (n, d) float32.
        Appended to the index's write-ahead log (durable before this returns), then visible
        to every search. Raises ValueError (shape, dtype, dimension, NaN)."""
    def delete(self, labels: "npt.ArrayLike") -> None:
        """Delete points by label (WAL first). Raises ValueError for a label that is not live."""
    def merge(self) -> Dict[str, Union[int, float]]:
        """Fold the pending inserts and deletes into the SSD index in place (StreamingMerge,
        crash-safe). Searches, inserts and deletes from other threads keep running (updates
        pause only while it writes in place). Returns deleted, inserted, repaired,
        blocks_written, n_slots and seconds."""
    @property
    def last_stats(self) -> Optional[Dict[str, np.ndarray]]: ...
    @property
    def dim(self) -> int: ...
    @property
    def n(self) -> int: ...
    @property
    def pending(self) -> Dict[str, int]:
        """Updates not merged yet: delta (points in the delta index), tombstones (deleted SSD
        points), wal_records."""
    @property
    def live_count(self) -> int:
        """Points a search can return."""
    @property
    def metric(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def R(self) -> int: ...
    @property
    def pq_bytes(self) -> int: ...
