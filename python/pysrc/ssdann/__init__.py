"""ssdann: a disk-resident, SSD-optimized approximate nearest-neighbour index.

A Vamana graph (DiskANN) whose nodes — full vector plus neighbour list — live in
checksummed 4 KB sectors on the SSD; only PQ codes are kept in RAM. Queries run a DiskANN
beam search with batched io_uring reads (O_DIRECT).

    import numpy as np, ssdann
    ssdann.build("base.fbin", "idx", R=64, L=100, pq_bytes=48)
    index = ssdann.Index("idx")
    queries = ssdann.read_vectors("query.fbin")          # (nq, d) float32, memory-mapped
    ids, dists = index.batch_search(queries, 10, L=100, W=4)
    gt_ids, _ = ssdann.read_ground_truth("gt.ibin")

One writer per index directory: a second ``Index(path)`` while one is open (in this or
another process) raises ``IndexLockedError``; any number of ``Index(path, read_only=True)``
handles may be open together, but not beside a writer. An ``Index`` inherited by a forked
child (multiprocessing's "fork" start method, DataLoader workers, gunicorn --preload)
searches there with the same results as in the parent; its inserts, deletes and merges
raise ``PermissionError`` there (open the index in that process to write).

A build larger than one machine's patience runs its partitions on a Ray cluster
(``ssdann.distributed.build``; ``pip install 'ssdann[ray]'``), or stage by stage from any
scheduler (``ssdann.build_plan`` / ``build_partition`` / ``build_merge`` / ``build_write``);
``ssdann.distributed.evaluate`` spreads a batch evaluation over Ray actors.

``help(ssdann.build)``, ``help(ssdann.Index)`` and ``help(ssdann.Index.batch_search)`` give
each parameter's shape, dtype, unit and default, the exceptions raised, and an example.
"""
from ._ssdann import (
    CorruptIndexError,
    Index,
    IndexLockedError,
    __version__,
    build,
    build_merge,
    build_partition,
    build_plan,
    build_status,
    build_write,
)
from . import distributed  # Ray is imported only when one of its functions is called
from .io import read_ground_truth, read_vectors, recall_at_k, write_vectors
from .plot import plot_eval  # matplotlib is imported only when it is called

__all__ = [
    "build",
    "build_plan",
    "build_partition",
    "build_merge",
    "build_write",
    "build_status",
    "distributed",
    "Index",
    "CorruptIndexError",
    "IndexLockedError",
    "read_vectors",
    "write_vectors",
    "read_ground_truth",
    "recall_at_k",
    "plot_eval",
    "__version__",
]
