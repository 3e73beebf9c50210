"""ssdann.distributed: the memory-budgeted build and batch evaluation on a Ray cluster.

Neither needs anything but Ray (``pip install 'ssdann[ray]'``, or ``'./python[ray]'`` from
a checkout) and one requirement of the cluster:

**Shared filesystem.** The data file, the output index's parent directory (where the
build's work directory ``.NAME.partitioned`` goes) and, for :func:`evaluate`, the index
directories must be on a filesystem that every Ray node sees at the same path (NFS, Lustre,
a cluster filesystem — or one machine). Both functions check this at start on every live
node — the file's size and modification time, and a probe file written by the driver — and
raise ``RuntimeError`` naming the node and the path that it does not see.

:func:`build` runs ``ssdann.build_plan`` on the driver, each partition's Vamana graph as one
Ray task (``ssdann.build_partition``: CPUs and memory declared from ``threads_per_task`` and
``memory_budget_gb``, retried when a worker or node is lost), then ``build_merge`` and
``build_write`` on the driver; the tasks' progress lines are printed on the driver. The same
stages run from any other scheduler with ``ssdann build plan | partition --part I | merge |
write`` (README, "Scale out").

:func:`evaluate` opens the index read-only once in each of ``workers`` Ray actors, searches a
shard of the queries in each, and gathers ids, per-query statistics and timings into the
table and JSON of ``ssdann eval``. Given a list of index directories (an index split by
partition, each part with its own labels), it scatters each query to every part or to the
``probe`` parts with the nearest centroid, and merges their results by exact distance.
"""
from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_INSTALL_HINT = "ssdann.distributed needs Ray: pip install 'ssdann[ray]' (from a checkout: pip install './python[ray]')"



#: Seconds a node may take to answer the shared-filesystem probe before it is reported.
PROBE_TIMEOUT_S = 300
#: Progress lines the driver's sink holds between two drains (more are counted, not kept).
SINK_MAX_LINES = 10_000

def _ray(address: Optional[str]):
    """Imports Ray and connects: to ``address`` when given, else to the cluster this process
    is already connected to, else to ``RAY_ADDRESS`` or a new local one (``ray.init()``)."""
    try:
        import ray
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    return ray


def _emitter(progress: Union[bool, Callable[[str], Any]]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda line: print(line, file=sys.stderr, flush=True)
    return lambda line: None


def _look(paths: Dict[str, Sequence], probe: Optional[str], token: str) -> Dict[str, Any]:
    """Runs on one node: what it sees of each path and of the probe file."""
    seen = {}
    for label, (path, size, mtime) in paths.items():
        try:
            st = os.stat(path)
            ok = size is None or (st.st_size == size and st.st_mtime_ns == mtime)
            seen[label] = None if ok else f"{path} differs (size {st.st_size}, mtime_ns {st.st_mtime_ns})"
        except OSError as e:
            seen[label] = f"{path}: {e.strerror}"
    if probe is not None:
        try:
            with open(probe, encoding="ascii") as f:
                seen["probe"] = None if f.read() == token else f"{probe} holds other contents"
        except OSError as e:
            seen["probe"] = f"{probe} (written by the driver): {e.strerror}"
    return {"host": socket.gethostname(), "seen": seen}


def _driver_stat(path: PathLike) -> os.stat_result:
    """The driver's view of a path (what every node must see too)."""
    return os.stat(path)


def check_shared_filesystem(files: Sequence[PathLike], probe_dir: Optional[PathLike] = None, *, address: Optional[str] = None) -> int:
    """Checks that every live Ray node sees ``files`` and ``probe_dir`` as the driver does.

    Parameters
    ----------
    files : sequence of str or os.PathLike
        Files every node must see with the driver's size and modification time (a
        directory is checked for existence only).
    probe_dir : str or os.PathLike, optional
        A directory every node must see, shared and writable: the driver writes a probe
        file there (``.ssdann-probe-<random>``), each node reads it back, the driver
        removes it. None: no probe (the files' size and modification time only).
    address : str, optional
        The Ray cluster (None: as :func:`build`).

    Returns
    -------
    int
        The number of nodes checked.

    Raises
    ------
    RuntimeError
        A node does not see a path, or sees another file there (the node and the path are
        named).
    FileNotFoundError
        The driver itself does not see a file.

    Examples
    --------
    >>> ssdann.distributed.check_shared_filesystem(["/shared/base.fbin"], "/shared", address="auto")  # doctest: +SKIP
    4
    """
    ray = _ray(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    paths = {}
    for i, f in enumerate(files):
        st = _driver_stat(f)
        exact = not os.path.isdir(f)
        paths[f"file{i}"] = (os.path.abspath(f), st.st_size if exact else None, st.st_mtime_ns)
    token = uuid.uuid4().hex
    probe = None
    if probe_dir is not None:
        probe = os.path.join(os.path.abspath(probe_dir), f".ssdann-probe-{token}")
        with open(probe, "w", encoding="ascii") as f:
            f.write(token)
    try:
        look = ray.remote(num_cpus=0, max_retries=0)(_look)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            look.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths, probe, token)
            for n in nodes
        ]
        results = []
        silent = []
        deadline = time.monotonic() + PROBE_TIMEOUT_S  # one wait for all nodes, not one each
        for node, ref in zip(nodes, refs):
            try:
                results.append(ray.get(ref, timeout=max(0.0, deadline - time.monotonic())))
            except (ray.exceptions.TaskUnschedulableError, ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError):
                results.append(None)  # a node that left the cluster since ray.nodes()
            except ray.exceptions.GetTimeoutError:
                ray.cancel(ref, force=True)
                results.append(None)
                silent.append(node["NodeManagerAddress"])
    finally:
        if probe is not None:
            os.remove(probe)
    problems = [
        f"node {addr} did not answer the filesystem probe within {PROBE_TIMEOUT_S} s (a hung mount?)"
        for addr in silent
    ]
    for node, r in zip(nodes, results):
        for label, why in (r["seen"] if r else {}).items():
            if why is not None:
                problems.append(f"node {node['NodeManagerAddress']} ({r['host']}): {why}")
    if problems:
        raise RuntimeError(
            "ssdann.distributed needs the data and the output directory on a filesystem every Ray node sees at the "
            "same path (NFS, a cluster filesystem, or one machine); " + "; ".join(problems)
        )
    return sum(r is not None for r in results)


def _partition_task(out_dir: str, part: int, threads: int, sink) -> Dict[str, Any]:
    """A Ray task: one partition's graph; progress lines go to the driver's sink actor."""
    import ray

    import ssdann

    node = ray.get_runtime_context().get_node_id()
    where = f"{socket.gethostname()} node {node[:8]}"

    def say(line: str) -> None:
        sink.say.remote(f"[partition {part} on {where}] {line}")

    try:
        rep = ssdann.build_partition(out_dir, part, threads=threads, progress=say)
    except ssdann.IndexLockedError:
        # A retry can start before the killed attempt's process is gone (its lock goes with
        # it): wait a little so that Ray's next retry finds it released.
        time.sleep(2.0)
        raise
    rep["node"] = node
    rep["host"] = socket.gethostname()
    rep["pid"] = os.getpid()
    return rep


class _Sink:
    """A Ray actor the tasks send progress lines to; the driver drains it (every 0.2 s).

    Holds at most ``SINK_MAX_LINES`` lines between drains: past that, lines are counted, not
    kept, and the next drain ends with one line saying how many were dropped.
    """

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.dropped = 0

    def say(self, line: str) -> None:
        if len(self.lines) < SINK_MAX_LINES:
            self.lines.append(line)
        else:
            self.dropped += 1

    def drain(self) -> List[str]:
        out, self.lines = self.lines, []
        if self.dropped:
            out.append(f"({self.dropped} progress lines dropped: more than {SINK_MAX_LINES} between two reads)")
            self.dropped = 0
        return out


def build(
    data: PathLike,
    out_dir: PathLike,
    *,
    memory_budget_gb: float,
    metric: str = "l2",
    R: int = 64,
    L: int = 100,
    alpha: float = 1.2,
    pq_bytes: Optional[int] = None,
    threads_per_task: int = 1,
    driver_threads: Optional[int] = None,
    force: bool = False,
    resume: bool = False,
    saturate_graph: bool = True,
    neighbor_codes: bool = False,
    vector_encoding: Optional[str] = None,
    max_index_growth: float = 2.0,
    max_retries: int = 3,
    address: Optional[str] = None,
    progress: Union[bool, Callable[[str], Any]] = True,
) -> Dict[str, Any]:
    """Build an index with its partitions' graphs as Ray tasks across a cluster.

    The memory-budgeted build (DiskANN §4.3) stage by stage: ``ssdann.build_plan`` (PQ, the
    k-means partitions) on the driver; one Ray task per partition (``ssdann.build_partition``:
    ``num_cpus=threads_per_task``, ``memory=`` the budget, retried up to ``max_retries``
    times when its worker or node dies — a partition already built is skipped); then
    ``build_merge`` and ``build_write`` on the driver. The index is the one
    ``ssdann.build(data, out_dir, memory_budget_gb=...)`` makes with the same plan.

    Parameters
    ----------
    data : str or os.PathLike
        The vector file (n × d; .fbin/.u8bin/.i8bin/.fvecs/.bvecs/.npy), on a filesystem
        every node sees at the same path (checked).
    out_dir : str or os.PathLike
        The index directory to create; its parent must be shared the same way (checked).
    memory_budget_gb : float
        RAM each stage may use, in GiB: it sizes the partitions, and each task declares it
        to Ray as its ``memory`` so a node runs only as many as fit.
    metric, R, L, alpha, pq_bytes, force, resume, saturate_graph
        As :func:`ssdann.build`.
    neighbor_codes, vector_encoding, max_index_growth
        As :func:`ssdann.build`: the record layout (f16 vectors and neighbour codes where
        the index then grows by at most ``max_index_growth``), chosen in the write stage.
    threads_per_task : int, default 1
        Threads of each partition task (its ``num_cpus``).
    driver_threads : int, optional
        Threads of the plan, merge and write on the driver (None: all its cores).
    max_retries : int, default 3
        Times Ray reruns a partition task whose worker or node died.
    address : str, optional
        The Ray cluster ("auto", "ray://host:10001", ...). None: the cluster this process is
        connected to, else ``RAY_ADDRESS``, else a new local one.
    progress : bool or callable, default True
        True prints each task's progress lines and each finished partition on stderr; a
        callable receives them instead; False is silent.

    Returns
    -------
    dict
        ``plan`` (the plan's report), ``partitions`` (each task's report, with the node,
        host and pid that built it, its seconds and its worker's peak RSS in bytes),
        ``merge``, ``write``, ``build`` (the report :func:`ssdann.build` returns), ``nodes``
        (nodes checked), ``order`` (the partitions in the order submitted: largest first),
        ``seconds`` (wall time of the whole build).

    Raises
    ------
    ImportError
        Ray is not installed.
    RuntimeError
        A node does not see the data or the output's directory at the same path.
    ValueError, FileExistsError, IndexLockedError
        As :func:`ssdann.build_plan`; a partition task's own error, after its retries.

    Examples
    --------
    >>> report = ssdann.distributed.build("base.fbin", "idx", memory_budget_gb=4, address="auto")  # doctest: +SKIP
    >>> report["build"]["partitions"]  # doctest: +SKIP
    8
    """
    import ssdann

    ray = _ray(address)
    say = _emitter(progress)
    t0 = time.perf_counter()
    data = os.path.abspath(data)
    out_dir = os.path.abspath(out_dir)
    if threads_per_task < 1:
        raise ValueError(f"threads_per_task = {threads_per_task}: must be ≥ 1")
    parent = os.path.dirname(out_dir)
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"{parent}: the output's parent directory does not exist")
    nodes = check_shared_filesystem([data, parent], parent)
    say(f"{nodes} Ray node(s) see {data} and {parent}")
    plan = ssdann.build_plan(
        data, out_dir, memory_budget_gb=memory_budget_gb, metric=metric, R=R, L=L, alpha=alpha,
        pq_bytes=pq_bytes, threads=driver_threads, force=force, resume=resume,
        saturate_graph=saturate_graph, neighbor_codes=neighbor_codes,
        vector_encoding=vector_encoding, max_index_growth=max_index_growth, progress=say,
    )
    parts = plan["partitions"]
    say(f"plan: {parts} partitions in {plan['work_dir']} ({plan['seconds']:.1f} s)")
    # The sink lives on the driver's node: losing a worker node must not lose it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    sink = ray.remote(num_cpus=0)(_Sink).options(scheduling_strategy=here).remote()
    task = ray.remote(_partition_task).options(
        num_cpus=threads_per_task,
        memory=int(memory_budget_gb * (1 << 30)),
        max_retries=max_retries,
        retry_exceptions=[ssdann.IndexLockedError],
    )
    # Largest first: the longest jobs start first and the small ones fill in around them
    # (the partitions of real data are uneven: up to 30% of the points in one).
    sizes = ssdann.build_status(out_dir)["sizes"]
    order = sorted(range(parts), key=lambda p: -sizes[p])
    pending = [task.remote(out_dir, p, threads_per_task, sink) for p in order]
    reports: List[Dict[str, Any]] = []
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.2)
            for line in ray.get(sink.drain.remote()):
                say(line)
            for ref in ready:
                rep = ray.get(ref)
                reports.append(rep)
                say(
                    f"partition {rep['part']} ({rep['points']} points) {'built' if rep['ran'] else 'already built'} "
                    f"on {rep['host']} in {rep['seconds']:.1f} s, worker peak RSS {rep['peak_rss_bytes'] / 2**20:.0f} MiB "
                    f"— {len(reports)}/{parts} done"
                )
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        for line in ray.get(sink.drain.remote()):
            say(line)
        ray.kill(sink)
    reports.sort(key=lambda r: r["part"])
    merge = ssdann.build_merge(out_dir, threads=driver_threads, progress=say)
    say(f"merge: {merge['seconds']:.1f} s")
    write = ssdann.build_write(out_dir, threads=driver_threads, force=force, progress=say)
    seconds = time.perf_counter() - t0
    say(f"built {out_dir}: {write['build']['n']} points, {parts} partitions, {seconds:.1f} s")
    return {
        "plan": plan,
        "partitions": reports,
        "merge": merge,
        "write": write,
        "build": write["build"],
        "nodes": nodes,
        "order": order,
        "seconds": seconds,
    }


class _Searcher:
    """A Ray actor: one index opened read-only once; searches the query rows it is given."""

    def __init__(self, index_dir: str, index_options: Optional[Dict[str, Any]] = None) -> None:
        import ssdann

        self.index = ssdann.Index(index_dir, read_only=True, **(index_options or {}))
        self.host = socket.gethostname()

    def info(self) -> Dict[str, Any]:
        return {
            "n": self.index.n, "dim": self.index.dim, "metric": self.index.metric,
            "centroid": self.index.centroid, "host": self.host, "pid": os.getpid(),
            "io": self.index.io_backend,
        }

    def warm(self, queries: np.ndarray, rows: np.ndarray, k: int, L: int, W: int, threads: int,
             termination_ratio: Optional[float] = None) -> int:
        """Searches up to 200 of its rows, untimed (as ``ssdann eval`` warms up)."""
        q = np.ascontiguousarray(queries[rows[:200]])
        if len(q):
            self.index.batch_search(q, k, L=L, W=W, threads=threads, termination_ratio=termination_ratio)
        return len(q)

    def search(self, queries: np.ndarray, rows: np.ndarray, k: int, L: int, W: int, threads: int,
               termination_ratio: Optional[float] = None) -> Dict[str, Any]:
        q = np.ascontiguousarray(queries[rows])
        t = time.perf_counter()
        if len(q):
            ids, dists, stats = self.index.batch_search(q, k, L=L, W=W, threads=threads, return_stats=True,
                                                        termination_ratio=termination_ratio)
        else:
            ids, dists = np.zeros((0, k), np.uint64), np.zeros((0, k), np.float32)
            stats = {key: np.zeros(0) for key in ("sector_reads", "hops", "cache_hits", "io_wait_us", "total_us")}
        seconds = time.perf_counter() - t
        return {"ids": ids, "dists": dists, "stats": stats, "seconds": seconds, "host": self.host, "pid": os.getpid()}


def _log_histogram(lat: np.ndarray, bins: int = 40):
    """As ``ssdann eval``'s JSON: log-spaced bin edges (µs) and counts."""
    if len(lat) == 0:
        return [], []
    lo = max(float(lat[0]), 1e-3)
    hi = max(float(lat[-1]), lo * 1.000001)
    step = math.log(hi / lo) / bins
    edges = [lo * math.exp(step * i) for i in range(bins + 1)]
    counts = [0] * bins
    for v in lat:
        counts[min(int(math.log(max(v, lo) / lo) / step), bins - 1)] += 1
    return edges, counts


def _percentile(sorted_lat: np.ndarray, p: float) -> float:
    if len(sorted_lat) == 0:
        return 0.0
    return float(sorted_lat[min(int(round(p / 100 * (len(sorted_lat) - 1))), len(sorted_lat) - 1)])


def _route(queries: np.ndarray, centroids: np.ndarray, metric: str, probe: int) -> np.ndarray:
    """(nq, probe) part numbers: the parts whose centroid is nearest each query (squared L2;
    inner product for "ip"; normalized queries for "cosine")."""
    q = queries.astype(np.float32)
    if metric == "ip":
        score = -(q @ centroids.T)
    else:
        if metric == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        score = (q * q).sum(1)[:, None] - 2 * q @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.argsort(score, axis=1, kind="stable")[:, :probe]


def evaluate(
    index_dir: Union[PathLike, Sequence[PathLike]],
    queries: Union[PathLike, np.ndarray],
    gt: Union[PathLike, np.ndarray, tuple],
    *,
    k: int = 10,
    L: Sequence[int] = (50, 100),
    W: int = 4,
    termination_ratio: Optional[float] = None,
    index_options: Optional[Dict[str, Any]] = None,
    workers: int = 2,
    threads_per_worker: int = 1,
    nq: Optional[int] = None,
    probe: Optional[int] = None,
    id_maps: Optional[Sequence[np.ndarray]] = None,
    address: Optional[str] = None,
    json_path: Optional[PathLike] = None,
    verbose: bool = True,
) -> Dict[str, Any]:
    """Batch evaluation across Ray actors: recall@k, QPS, latency and reads per L.

    Each actor opens the index read-only once (``ssdann.Index(index_dir, read_only=True)``)
    and searches its shard of the queries with ``batch_search`` (after an untimed warm-up
    of up to 200 of them, as ``ssdann eval``); QPS is all queries over the driver's wall
    time from sending the shards to holding every result; the driver gathers every query's ids, statistics and
    latency and prints the table of ``ssdann eval``.

    Given a list of index directories — an index split by partition, one index per part
    whose labels are the global ids — there is one actor per part (``workers`` is
    ignored), each query goes to every part (``probe=None``) or to the ``probe`` parts
    whose centroid (``Index.centroid``) is nearest, and the parts' results are merged by
    exact distance (squared L2, negated inner product or 1 − cos, as ``search`` returns).

    Parameters
    ----------
    index_dir : str or os.PathLike, or a sequence of them
        The index (every node must see it at the same path; checked), or its parts.
    queries : str, os.PathLike or numpy.ndarray
        (nq, d) float32 queries, or a vector file (``ssdann.read_vectors``).
    gt : str, os.PathLike, numpy.ndarray or (ids, distances)
        Ground truth: a .ibin file (``ssdann.read_ground_truth``), an (nq, ≥ k) id array,
        or (ids, distances) (distances give recall with ties).
    k : int, default 10
        Neighbours per query.
    L : sequence of int, default (50, 100)
        Search list sizes swept.
    W : int, default 4
        Beam width (1..=1024), as ``Index.batch_search``.
    termination_ratio : float, optional
        Early termination, as ``Index.batch_search`` (None: each part's own ratio;
        ``float("inf")``: off).
    index_options : dict, optional
        Keyword arguments for each actor's ``ssdann.Index`` (``cache_nodes``,
        ``navigation_nodes``, ``busy_poll_us``, ...), as for a local Index.
    workers : int, default 2
        Actors, each with ``threads_per_worker`` CPUs and search threads.
    threads_per_worker : int, default 1
        Search threads per actor.
    nq : int, optional
        Evaluate only the first nq queries.
    probe : int, optional
        With index parts: how many parts each query goes to (None: all).
    id_maps : sequence of numpy.ndarray, optional
        With index parts: one (n_p,) integer array per part giving the global id of each of
        its labels (a part built from rows ``rows_p`` of the base with ``ssdann.build``
        has labels 0..n_p-1: pass ``rows_p``). None: the parts' labels are global already.
    address : str, optional
        The Ray cluster, as :func:`build`.
    json_path : str or os.PathLike, optional
        Also write the result (without ids) as ``ssdann eval --json`` does (``ssdann plot``
        draws it).
    verbose : bool, default True
        Print the header line and one table row per L.

    Returns
    -------
    dict
        ``params``; ``rows``: one dict per L with the keys of ``ssdann eval --json``
        (threads, L, recall, recall_ties, qps, mean_us, p50_us, p95_us, p99_us, p999_us,
        sector_reads, cache_hits, hops, io_wait_us, latency_hist) plus ``qps_per_worker``
        and ``seconds_per_worker``; ``ids`` and ``distances``: {L: (nq, k) array}.

    Raises
    ------
    ImportError
        Ray is not installed.
    RuntimeError
        A node does not see the index at the same path.
    ValueError
        Shapes that disagree (queries, ground truth, k), L < k, workers < 1, probe out of
        range, parts of different dimension or metric.

    Examples
    --------
    >>> res = ssdann.distributed.evaluate("idx", "query.fbin", "gt.ibin", L=[50, 100], workers=4)  # doctest: +SKIP
    >>> res["rows"][0]["recall"]  # doctest: +SKIP
    0.95
    """
    import ssdann

    ray = _ray(address)
    parts_mode = not isinstance(index_dir, (str, os.PathLike))
    dirs = [os.path.abspath(d) for d in (index_dir if parts_mode else [index_dir])]
    if not dirs:
        raise ValueError("index_dir: an empty list of index parts")
    if workers < 1 or threads_per_worker < 1:
        raise ValueError(f"workers = {workers}, threads_per_worker = {threads_per_worker}: both must be ≥ 1")
    if isinstance(queries, (str, os.PathLike)):
        queries = ssdann.read_vectors(queries)
    queries = np.asarray(queries)
    if queries.ndim != 2:
        raise ValueError(f"queries: expected an (nq, d) array, got shape {queries.shape}")
    if queries.dtype != np.float32:
        raise ValueError(f"queries: float32 expected, got {queries.dtype} (use queries.astype(np.float32))")
    gt_dist = None
    if isinstance(gt, (str, os.PathLike)):
        gt_ids, gt_dist = ssdann.read_ground_truth(gt)
    elif isinstance(gt, tuple):
        gt_ids, gt_dist = (np.asarray(a) for a in gt)
    else:
        gt_ids = np.asarray(gt)
    total = len(queries) if nq is None else min(nq, len(queries))
    if total < 1:
        raise ValueError(f"nq = {nq}: no queries to evaluate")
    if gt_ids.ndim != 2 or len(gt_ids) < total or gt_ids.shape[1] < k:
        raise ValueError(f"ground truth of shape {gt_ids.shape} for {total} queries at k = {k}: needs ≥ {total} rows of ≥ {k} ids")
    ls = [int(x) for x in L]
    if any(x < k for x in ls):
        raise ValueError(f"L = {ls}: every L must be ≥ k = {k}")
    queries = np.ascontiguousarray(queries[:total])
    nodes = check_shared_filesystem([os.path.join(d, "index.ssd") for d in dirs], address=address)

    actor_cls = ray.remote(num_cpus=threads_per_worker)(_Searcher)
    n_actors = len(dirs) if parts_mode else workers
    actors = [actor_cls.remote(dirs[i] if parts_mode else dirs[0], index_options) for i in range(n_actors)]
    try:
        return _evaluate_on(ray, actors, dirs, parts_mode, queries, gt_ids, gt_dist, total, k, ls,
                            (W, termination_ratio),
                            threads_per_worker, probe, id_maps, nodes, json_path, verbose)
    finally:
        for a in actors:
            ray.kill(a)


def _evaluate_on(ray, actors, dirs, parts_mode, queries, gt_ids, gt_dist, total, k, ls, search,
                 threads_per_worker, probe, id_maps, nodes, json_path, verbose):
    """The body of :func:`evaluate` once its actors exist (they are killed by the caller).
    ``search``: (W, termination_ratio)."""
    W, termination_ratio = search
    import ssdann

    n_actors = len(actors)
    infos = ray.get([a.info.remote() for a in actors])
    if len({(i["dim"], i["metric"]) for i in infos}) != 1:
        raise ValueError("index parts of different dimension or metric: " + ", ".join(f"{d} (d = {i['dim']}, {i['metric']})" for d, i in zip(dirs, infos)))
    if infos[0]["dim"] != queries.shape[1]:
        raise ValueError(f"queries have d = {queries.shape[1]} but the index has d = {infos[0]['dim']}")
    metric = infos[0]["metric"]
    if parts_mode:
        p = len(dirs) if probe is None else probe
        if not 1 <= p <= len(dirs):
            raise ValueError(f"probe = {probe}: must be in 1..={len(dirs)} (the number of parts)")
        if id_maps is not None:
            if len(id_maps) != len(dirs):
                raise ValueError(f"id_maps: {len(id_maps)} arrays for {len(dirs)} parts")
            id_maps = [np.asarray(m, dtype=np.uint64) for m in id_maps]
            for d, m, i in zip(dirs, id_maps, infos):
                if m.ndim != 1 or len(m) < i["n"]:
                    raise ValueError(f"id_maps: {d} has {i['n']} points but its map has shape {m.shape}")
        routes = _route(queries, np.stack([i["centroid"] for i in infos]), metric, p)
        rows_of = [np.nonzero((routes == a).any(axis=1))[0] for a in range(n_actors)]
    else:
        bounds = np.linspace(0, total, n_actors + 1).astype(np.int64)
        rows_of = [np.arange(bounds[a], bounds[a + 1]) for a in range(n_actors)]
    qref = ray.put(queries)
    params = {
        "index": dirs if parts_mode else dirs[0], "queries": None, "nq": total, "k": k, "W": W, "termination_ratio": termination_ratio,
        "workers": n_actors, "threads_per_worker": threads_per_worker, "probe": probe if parts_mode else None,
        "nodes": nodes, "hosts": sorted({i["host"] for i in infos}), "io": infos[0]["io"], "mode": "parts" if parts_mode else "shards",
    }
    if verbose:
        where = f"{len(dirs)} parts, probe {probe or len(dirs)}" if parts_mode else dirs[0]
        print(f"index {where} (d = {infos[0]['dim']}, {metric}), {total} queries, k = {k}, W = {W}, "
              f"{n_actors} Ray workers × {threads_per_worker} threads on {len(params['hosts'])} host(s)")
        print(f"{'thr':>3} {'L':>5} {'recall@k':>9} {'+ties':>9} {'QPS':>9} {'mean_us':>9} {'p50_us':>9} {'p95_us':>9} "
              f"{'p99_us':>9} {'p99.9_us':>9} {'reads':>8} {'cache':>7} {'hops':>6} {'io_us':>8}")
    out_rows, out_ids, out_dists = [], {}, {}
    for l in ls:
        ray.get([a.warm.remote(qref, rows_of[i], k, l, W, threads_per_worker, termination_ratio)
                 for i, a in enumerate(actors)])
        t = time.perf_counter()
        refs = [a.search.remote(qref, rows_of[i], k, l, W, threads_per_worker, termination_ratio)
                for i, a in enumerate(actors)]
        res = ray.get(refs)
        wall = time.perf_counter() - t
        if parts_mode and id_maps is not None:
            for r, m in zip(res, id_maps):
                live = r["ids"] != np.iinfo(np.uint64).max
                r["ids"] = np.where(live, m[np.where(live, r["ids"], 0).astype(np.int64)], r["ids"])
        ids, dists, stat = _gather(res, rows_of, total, k, parts_mode)
        lat = np.sort(stat["total_us"])
        edges, counts = _log_histogram(lat)
        row = {
            "threads": n_actors * threads_per_worker, "L": l,
            "recall": ssdann.recall_at_k(ids, gt_ids[:total], k),
            "recall_ties": ssdann.recall_at_k(ids, gt_ids[:total], k, gt_dist[:total]) if gt_dist is not None else None,
            "qps": total / wall, "mean_us": float(lat.mean()),
            "p50_us": _percentile(lat, 50), "p95_us": _percentile(lat, 95),
            "p99_us": _percentile(lat, 99), "p999_us": _percentile(lat, 99.9),
            "sector_reads": float(stat["sector_reads"].mean()), "cache_hits": float(stat["cache_hits"].mean()),
            "hops": float(stat["hops"].mean()), "io_wait_us": float(stat["io_wait_us"].mean()),
            "latency_hist": {"edges_us": edges, "counts": counts},
            "qps_per_worker": [len(r) / x["seconds"] if x["seconds"] > 0 else 0.0 for r, x in zip(rows_of, res)],
            "seconds_per_worker": [x["seconds"] for x in res],
        }
        if verbose:
            ties = row["recall_ties"] if row["recall_ties"] is not None else float("nan")
            print(f"{row['threads']:>3} {l:>5} {row['recall']:>9.4f} {ties:>9.4f} {row['qps']:>9.0f} {row['mean_us']:>9.0f} "
                  f"{row['p50_us']:>9.0f} {row['p95_us']:>9.0f} {row['p99_us']:>9.0f} {row['p999_us']:>9.0f} "
                  f"{row['sector_reads']:>8.1f} {row['cache_hits']:>7.1f} {row['hops']:>6.1f} {row['io_wait_us']:>8.0f}")
        out_rows.append(row)
        out_ids[l], out_dists[l] = ids, dists
    result = {"params": params, "rows": out_rows}
    if json_path is not None:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    result["ids"], result["distances"] = out_ids, out_dists
    return result


def _gather(res, rows_of, total: int, k: int, parts_mode: bool):
    """The driver's side: each query's ids and distances (merged by distance across parts,
    without repeats) and its statistics (summed across the parts it went to)."""
    keys = ("sector_reads", "hops", "cache_hits", "io_wait_us", "total_us")
    stat = {key: np.zeros(total) for key in keys}
    if not parts_mode:
        ids = np.concatenate([r["ids"] for r in res])
        dists = np.concatenate([r["dists"] for r in res])
        for key in keys:
            stat[key] = np.concatenate([np.asarray(r["stats"][key], dtype=np.float64) for r in res])
        return ids, dists, stat
    cand_ids: List[List[np.ndarray]] = [[] for _ in range(total)]
    cand_d: List[List[np.ndarray]] = [[] for _ in range(total)]
    for rows, r in zip(rows_of, res):
        for j, q in enumerate(rows):
            cand_ids[q].append(r["ids"][j])
            cand_d[q].append(r["dists"][j])
        for key in keys:
            v = np.asarray(r["stats"][key], dtype=np.float64)
            # The parts search in parallel: a query's latency is its slowest part's; its
            # reads, hops and I/O wait are the sum of its parts'.
            (np.maximum if key == "total_us" else np.add).at(stat[key], rows, v)
    pad = np.iinfo(np.uint64).max
    ids = np.full((total, k), pad, dtype=np.uint64)
    dists = np.full((total, k), np.inf, dtype=np.float32)
    for q in range(total):
        if not cand_ids[q]:
            continue
        ci, cd = np.concatenate(cand_ids[q]), np.concatenate(cand_d[q])
        keep = ci != pad
        ci, cd = ci[keep], cd[keep]
        order = np.lexsort((ci, cd))
        seen, m = set(), 0
        for o in order:
            label = int(ci[o])
            if label in seen:
                continue
            seen.add(label)
            ids[q, m], dists[q, m] = ci[o], cd[o]
            m += 1
            if m == k:
                break
    return ids, dists, stat
