"""pytest suite of the Python package (run by .ci/run in a virtualenv).

Real data from $SSDANN_TEST_DATA (default ../shared/data relative to the repo); a generated
clustered stand-in where it is absent, with the same assertions."""
import os
import pathlib
import struct

import numpy as np
import pytest

import ssdann

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = pathlib.Path(os.environ.get("SSDANN_TEST_DATA", REPO.parent / "shared" / "data")) / "pypi-minilm-100k"


def read_fbin(p, limit=None):
    with open(p, "rb") as f:
        n, d = struct.unpack("<II", f.read(8))
        n = n if limit is None else min(n, limit)
        return np.fromfile(f, dtype=np.float32, count=n * d).reshape(n, d)


def read_ibin(p):
    with open(p, "rb") as f:
        nq, k = struct.unpack("<II", f.read(8))
        return np.fromfile(f, dtype=np.uint32, count=nq * k).reshape(nq, k)


def exact_gt(base, queries, k):
    d = (queries ** 2).sum(1)[:, None] - 2 * queries @ base.T + (base ** 2).sum(1)[None, :]
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def data():
    if (DATA / "base10k.fbin").exists():
        base = DATA / "base10k.fbin"
        q = read_fbin(DATA / "query.fbin", 1000)
        gt = read_ibin(DATA / "gt10k.ibin")[:1000]
        return str(base), read_fbin(base), q, gt
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(64, 384)).astype(np.float32)
    pick = rng.integers(0, 64, size=11000)
    x = centres[pick] + 0.5 * rng.normal(size=(11000, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base, q = np.ascontiguousarray(x[:10000]), np.ascontiguousarray(x[10000:])
    return base, base, q, exact_gt(base, q, 100)


@pytest.fixture(scope="module")
def index(tmp_path_factory, data):
    src, _, _, _ = data
    out = tmp_path_factory.mktemp("idx") / "idx"
    rep = ssdann.build(src, out, R=64, L=100, alpha=1.2, pq_bytes=48, threads=2)
    assert rep["n"] == 10000 and rep["pq_bytes"] == 48
    # the default on 384-d float32: f16 vectors + neighbour codes (growth 2 ≤ max_index_growth)
    assert (rep["neighbor_code_bytes"], rep["vector_encoding"]) == (43, "f16")
    return ssdann.Index(out)


def recall(ids, gt, k=10):
    return np.mean([len(set(ids[i, :k].tolist()) & set(gt[i, :k].tolist())) / k for i in range(ids.shape[0])])


def test_batch_search_recall(index, data):
    _, _, q, gt = data
    ids, dists = index.batch_search(q, 10, L=100, W=4)
    assert ids.shape == (q.shape[0], 10) and ids.dtype == np.uint64
    assert dists.shape == (q.shape[0], 10) and dists.dtype == np.float32
    r = recall(ids, gt)
    assert r >= 0.95, r
    assert np.all(np.diff(dists, axis=1) >= 0)


def test_batch_equals_per_query_and_stats(index, data):
    _, base, q, _ = data
    q = q[:100]
    ids, dists, stats = index.batch_search(q, 10, L=50, W=4, threads=2, return_stats=True)
    for i in range(q.shape[0]):
        one_ids, one_d = index.search(q[i], 10, L=50, W=4)
        assert one_ids.tolist() == ids[i].tolist()
        np.testing.assert_allclose(one_d, dists[i], rtol=1e-6)
    assert stats["sector_reads"].shape == (100,) and (stats["sector_reads"] > 0).all()
    assert set(stats) == {"sector_reads", "hops", "cache_hits", "nodes_expanded", "io_wait_us", "total_us"}
    assert index.last_stats is not None and index.last_stats["hops"].shape == (100,)
    # distances are exact squared L2 to the returned labels (row numbers of the build file)
    exact = ((base[ids[0].astype(np.int64)] - q[0]) ** 2).sum(1)
    np.testing.assert_allclose(dists[0], exact, rtol=1e-4, atol=1e-5)


def test_the_search_parameters_match_the_cli_and_rust(index, data):
    """One set of search parameters on every surface: W up to 1,024 (not 16), early
    termination per query, the navigation graph and busy polling at open."""
    _, _, q, gt = data
    q, gt = q[:200], gt[:200]
    ids, _, plain = index.batch_search(q, 10, L=150, W=4, return_stats=True,
                                       termination_ratio=float("inf"))
    early_ids, _, early = index.batch_search(q, 10, L=150, W=4, return_stats=True, termination_ratio=1.05)
    assert early["sector_reads"].mean() < 0.9 * plain["sector_reads"].mean()
    assert recall(early_ids, gt) >= recall(ids, gt) - 0.01
    # the default is the index's own ratio, from PQ's error measured by the build
    r = index.default_termination_ratio
    assert r == pytest.approx(1 + max(1.5 * index.near_error, 0.15))
    def_ids, _, default = index.batch_search(q, 10, L=150, W=4, return_stats=True)
    fixed_ids, _, fixed = index.batch_search(q, 10, L=150, W=4, return_stats=True, termination_ratio=r)
    assert def_ids.tolist() == fixed_ids.tolist()
    assert default["sector_reads"].tolist() == fixed["sector_reads"].tolist()
    assert default["sector_reads"].mean() < plain["sector_reads"].mean()
    one, _ = index.search(q[0], 10, L=150, termination_ratio=1.05)
    assert one.tolist() == early_ids[0].tolist()
    wide, _ = index.search(q[0], 10, L=64, W=32)
    assert len(set(wide.tolist()) & set(gt[0, :10].tolist())) >= 8
    for bad in (0.5, float("nan")):
        with pytest.raises(ValueError, match="termination_ratio"):
            index.search(q[0], 10, termination_ratio=bad)
    with pytest.raises(ValueError, match="W"):
        index.search(q[0], 10, W=1025)


def test_the_navigation_graph_and_busy_polling_are_open_options(tmp_path, data):
    _, base, q, _ = data
    small = np.ascontiguousarray(base[:2000])
    ssdann.build(small, tmp_path / "idx", R=32, L=64, threads=2)
    gt = exact_gt(small, q[:100], 10)
    # navigation_nodes=0: no navigation graph, every search starts at the medoid.
    plain = ssdann.Index(tmp_path / "idx", read_only=True, navigation_nodes=0)
    ids, _, st = plain.batch_search(q[:100], 10, L=40, return_stats=True)
    # The default (None) loads the build's navigation.bin; 300 builds one of 300 nodes at open.
    for opts in ({}, {"navigation_nodes": 300, "busy_poll_us": 100}):
        nav = ssdann.Index(tmp_path / "idx", read_only=True, **opts)
        nav_ids, _, nst = nav.batch_search(q[:100], 10, L=40, return_stats=True)
        assert recall(nav_ids, gt) >= recall(ids, gt) - 0.02, opts
        assert nst["hops"].mean() < st["hops"].mean(), opts
    with pytest.raises(ValueError, match="busy_poll_us"):
        ssdann.Index(tmp_path / "idx", read_only=True, busy_poll_us=10_001)


def test_properties(index):
    assert (index.dim, index.n, index.metric, index.dtype, index.R, index.pq_bytes) == (384, 10000, "l2", "float32", 64, 48)
    assert "n=10000" in repr(index)


def test_build_from_array_and_bad_inputs(tmp_path, data):
    _, base, q, _ = data
    small = np.ascontiguousarray(base[:500])
    rep = ssdann.build(small, tmp_path / "a", R=16, L=32, pq_bytes=8)
    assert rep["n"] == 500
    idx = ssdann.Index(tmp_path / "a", io="pread")
    # each point finds itself (no two of these 500 are closer than 1.18): 2–3% miss at
    # L = 20 with 8 PQ bytes on 384-d, which graph threads' order varies
    own = [int(idx.search(small[i], 1, L=20)[0][0]) == i for i in range(500)]
    assert sum(own) >= 0.95 * 500
    with pytest.raises(ValueError, match="float64.*astype"):
        ssdann.build(small.astype(np.float64), tmp_path / "b")
    with pytest.raises(ValueError, match="2-D"):
        ssdann.build(small[0], tmp_path / "b")
    with pytest.raises(ValueError, match="parameter pq_bytes = 0"):
        ssdann.build(small, tmp_path / "b", pq_bytes=0)
    with pytest.raises(ValueError, match="parameter L = 16"):
        ssdann.build(small, tmp_path / "b", R=32, L=16)
    with pytest.raises(FileExistsError):
        ssdann.build(small, tmp_path / "a")
    bad = small.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        ssdann.build(bad, tmp_path / "c")
    with pytest.raises(ValueError, match="unknown metric"):
        ssdann.build(small, tmp_path / "c", metric="hamming")
    with pytest.raises(FileNotFoundError, match="missing.fbin"):
        ssdann.build(str(tmp_path / "missing.fbin"), tmp_path / "c")


def test_neighbor_codes_read_less_for_the_same_recall_and_take_updates(tmp_path, data, index):
    src, _, q, gt = data
    rep = ssdann.build(src, tmp_path / "nc", R=64, L=100, alpha=1.2, pq_bytes=48, threads=2, neighbor_codes=True)
    assert rep["neighbor_code_bytes"] == 31 and rep["pq_bytes"] == 48
    coded = ssdann.Index(tmp_path / "nc")
    ids_c, _, st_c = coded.batch_search(q, 10, L=30, W=4, return_stats=True)
    plain_rep = ssdann.build(src, tmp_path / "plain", R=64, L=100, alpha=1.2, pq_bytes=48, threads=2,
                             max_index_growth=1.0)
    assert (plain_rep["neighbor_code_bytes"], plain_rep["vector_encoding"]) == (0, "f32")
    plain = ssdann.Index(tmp_path / "plain")
    ids_p, _, st_p = plain.batch_search(q, 10, L=50, W=4, return_stats=True)
    # the 10K test set: ~0.986 for both, ~37 vs ~49 reads per query
    assert recall(ids_c, gt) >= recall(ids_p, gt) - 0.003
    assert st_c["sector_reads"].mean() < 0.85 * st_p["sector_reads"].mean()
    # updates are maintained: the merge writes f16/code records for new and repaired nodes
    coded.insert(10**9, q[0])
    coded.delete(int(ids_c[1, 0]))
    coded.merge()
    got, _ = coded.search(q[0], 1, L=30)
    assert got[0] == 10**9
    assert int(ids_c[1, 0]) not in coded.search(q[1], 10, L=30)[0].tolist()
    with pytest.raises(ValueError, match="parameter neighbor_codes.*R = 600 neighbours.*none fits"):
        ssdann.build(src, tmp_path / "nc2", R=600, L=600, neighbor_codes=True, memory_budget_gb=1.0)
    with pytest.raises(ValueError, match="vector_encoding"):
        ssdann.build(src, tmp_path / "nc3", vector_encoding="bf16")


def test_saturate_graph_fills_every_list_to_r(tmp_path, data):
    _, base, _, _ = data
    small = np.ascontiguousarray(base[:3000])
    # the first 3,000 of the 10K test set: mean degree 54.5 of 64 without saturation
    plain = ssdann.build(small, tmp_path / "plain", R=64, L=100, pq_bytes=48, saturate_graph=False)
    full = ssdann.build(small, tmp_path / "sat", R=64, L=100, pq_bytes=48)  # the default
    assert plain["mean_degree"] < 60.0
    assert full["mean_degree"] == 64.0
    assert full["index_bytes"] == plain["index_bytes"]


def test_the_staged_build_saturates_by_default_and_build_plan_can_turn_it_off(tmp_path):
    # low-dimensional uniform data: the α rule leaves lists well below R
    rows = np.random.default_rng(3).random((3000, 4), dtype=np.float32)
    ssdann.write_vectors(tmp_path / "u.fbin", rows)
    degree = {}
    for sat in (False, True):
        out = tmp_path / f"s{sat}"
        kw = {} if sat else {"saturate_graph": False}  # True is the default
        plan = ssdann.build_plan(tmp_path / "u.fbin", out, memory_budget_gb=0.0629, R=16, L=32,
                                 pq_bytes=2, threads=1, **kw)
        for part in range(plan["partitions"]):
            ssdann.build_partition(out, part, threads=1)
        ssdann.build_merge(out, threads=1)
        degree[sat] = ssdann.build_write(out, threads=1)["build"]["mean_degree"]
    assert degree[False] < 0.8 * 16 and degree[True] > 0.99 * 16, degree


def test_build_plan_takes_the_record_layout_parameters(tmp_path):
    rows = np.random.default_rng(5).random((3000, 16), dtype=np.float32)
    ssdann.write_vectors(tmp_path / "r.fbin", rows)
    layouts = {}
    for name, kw in {
        "coded": dict(neighbor_codes=True, vector_encoding="f16"),
        "plain": dict(max_index_growth=1.0),
    }.items():
        out = tmp_path / name
        plan = ssdann.build_plan(tmp_path / "r.fbin", out, memory_budget_gb=0.0635, R=16, L=32,
                                 pq_bytes=8, threads=1, **kw)
        for part in range(plan["partitions"]):
            ssdann.build_partition(out, part, threads=1)
        ssdann.build_merge(out, threads=1)
        b = ssdann.build_write(out, threads=1)["build"]
        layouts[name] = (b["vector_encoding"], b["neighbor_code_bytes"] > 0)
    assert layouts == {"coded": ("f16", True), "plain": ("f32", False)}, layouts
    with pytest.raises(ValueError, match="vector_encoding = \"f8\""):
        ssdann.build_plan(tmp_path / "r.fbin", tmp_path / "bad", memory_budget_gb=0.0629,
                          vector_encoding="f8")


def test_memory_budgeted_build_is_partitioned_and_searches_well(tmp_path, data):
    _, base, q, _ = data
    small = np.ascontiguousarray(base[:3000])
    path = tmp_path / "small.fbin"
    with open(path, "wb") as f:
        f.write(struct.pack("<II", *small.shape))
        small.tofile(f)
    # 64 MiB of fixed allowance plus room for partitions of ~800 points: ≥ 5 partitions.
    rep = ssdann.build(str(path), tmp_path / "p", R=32, L=64, pq_bytes=48, memory_budget_gb=0.0635)
    assert rep["partitions"] >= 4 and rep["n"] == 3000
    assert not (tmp_path / ".p.partitioned").exists()
    # this budget cannot hold the neighbour codes' training sample: plain records (said so)
    assert (rep["neighbor_code_bytes"], rep["vector_encoding"]) == (0, "f32")
    # the one-shot build compared with it writes plain records too (growth 1)
    one = ssdann.build(str(path), tmp_path / "one", R=32, L=64, pq_bytes=48, max_index_growth=1.0)
    assert one["partitions"] == 1
    gt = exact_gt(small, q[:200], 10)
    ids, _ = ssdann.Index(tmp_path / "p").batch_search(q[:200], 10, L=50)
    ids1, _ = ssdann.Index(tmp_path / "one").batch_search(q[:200], 10, L=50)
    r, r1 = recall(ids, gt), recall(ids1, gt)
    assert r >= r1 - 0.03 and r >= 0.8, (r, r1)
    with pytest.raises(ValueError, match="too small.*minimum"):
        ssdann.build(str(path), tmp_path / "x", R=16, L=32, pq_bytes=16, memory_budget_gb=0.0001)
    with pytest.raises(ValueError, match="file path"):
        ssdann.build(small, tmp_path / "x", memory_budget_gb=1.0)
    with pytest.raises(ValueError, match="memory_budget_gb"):
        ssdann.build(str(path), tmp_path / "x", resume=True)
    with pytest.raises(ValueError, match="memory_budget_gb = -1"):
        ssdann.build(str(path), tmp_path / "x", memory_budget_gb=-1.0)


def test_bad_queries_raise_value_error(index, data):
    _, _, q, _ = data
    with pytest.raises(ValueError, match="dimension"):
        index.search(q[0][:100], 10)
    with pytest.raises(ValueError, match="float64.*astype"):
        index.search(q[0].astype(np.float64), 10)
    with pytest.raises(ValueError, match="shape"):
        index.search(q[:2], 10)
    with pytest.raises(ValueError, match="k"):
        index.search(q[0], 0)
    with pytest.raises(ValueError, match="L"):
        index.search(q[0], 10, L=5)
    with pytest.raises(ValueError, match="W"):
        index.search(q[0], 10, W=0)
    nan = q[0].copy()
    nan[0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        index.search(nan, 10)
    with pytest.raises(ValueError, match="d = 10"):
        index.batch_search(np.zeros((3, 10), dtype=np.float32), 10)
    with pytest.raises(ValueError, match="float64"):
        index.batch_search(q[:3].astype(np.float64), 10)


def test_corrupt_and_missing_index(tmp_path, index, data):
    _, base, _, _ = data
    ssdann.build(np.ascontiguousarray(base[:300]), tmp_path / "i", R=16, L=32, pq_bytes=8)
    p = tmp_path / "i" / "index.ssd"
    b = bytearray(p.read_bytes())
    b[20] ^= 0xFF  # header slot 0
    p.write_bytes(bytes(b))
    with pytest.raises(ssdann.CorruptIndexError, match="header slot 0"):
        ssdann.Index(tmp_path / "i")
    with pytest.raises(OSError):
        ssdann.Index(tmp_path / "nope")
    with pytest.raises(ValueError, match="backend"):
        ssdann.Index(tmp_path / "i", io="aio")


def test_insert_and_delete(tmp_path, data):
    _, base, _, _ = data
    small = np.ascontiguousarray(base[:400])
    ssdann.build(small, tmp_path / "u", R=16, L=32, pq_bytes=8)
    idx = ssdann.Index(tmp_path / "u")
    new = np.ascontiguousarray(base[400:420])
    idx.insert(np.arange(1000, 1020, dtype=np.uint64), new)
    ids, d = idx.search(new[5], 1, L=32)
    assert ids[0] == 1005 and d[0] < 1e-6
    idx.delete([1005, 3])
    ids, _ = idx.batch_search(np.ascontiguousarray(np.stack([new[5], small[3]])), 5, L=32)
    assert 1005 not in ids[0].tolist() and 3 not in ids[1].tolist()
    with pytest.raises(ValueError, match="label"):
        idx.delete([3])
    with pytest.raises(ValueError, match="float64"):
        idx.insert([5000], new[:1].astype(np.float64))
    with pytest.raises(ValueError, match="rows"):
        idx.insert([1, 2], new[:1])
    # the updates survive a reopen (WAL replay)
    del idx
    idx = ssdann.Index(tmp_path / "u")
    ids, _ = idx.search(new[6], 1, L=32)
    assert ids[0] == 1006
    # merge folds them into the SSD index: 1 SSD delete (1005 left the delta), 19 inserts
    assert idx.pending == {"delta": 19, "tombstones": 1, "wal_records": 22}
    assert idx.live_count == 400 - 1 + 19
    rep = idx.merge()
    assert (rep["deleted"], rep["inserted"], rep["n_slots"]) == (1, 19, 418)
    ids, d = idx.search(new[6], 1, L=32)
    assert ids[0] == 1006 and d[0] < 1e-6
    assert idx.pending == {"delta": 0, "tombstones": 0, "wal_records": 0}
    ids, _ = idx.search(small[3], 5, L=32)
    assert 3 not in ids.tolist()


def test_searches_from_another_thread_run_while_a_merge_runs(tmp_path, data):
    import threading
    import time

    _, base, _, _ = data
    small = np.ascontiguousarray(base[:3000])
    ssdann.build(small, tmp_path / "m", R=24, L=48, pq_bytes=16)
    idx = ssdann.Index(tmp_path / "m")
    new = np.ascontiguousarray(base[3000:3600])
    idx.insert(np.arange(50_000, 50_600, dtype=np.uint64), new)
    idx.delete(list(range(0, 3000, 5)))
    done = threading.Event()
    stamps = []
    # an assert inside the thread would only warn: what it sees is checked in this thread
    deleted_seen, errors = [], []

    def searcher():
        i = 0
        try:
            while not done.is_set():
                ids, _ = idx.search(small[i % 3000], 5, L=32)
                deleted_seen.extend(int(x) for x in ids if int(x) % 5 == 0 and int(x) < 50_000)
                stamps.append(time.perf_counter())
                i += 7
        except Exception as e:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    rep = idx.merge()
    t1 = time.perf_counter()
    done.set()
    t.join()
    assert not errors, errors
    assert deleted_seen == [], f"deleted labels returned during the merge: {deleted_seen[:10]}"
    during = sum(1 for s in stamps if t0 < s < t1)
    assert (rep["deleted"], rep["inserted"]) == (600, 600)
    # merge() releases the GIL: the other thread kept searching while it ran (with the GIL
    # held, at most the one search in flight at the start could finish "during" it)
    print(f"{during} searches during the {t1 - t0:.3f} s merge")
    # not a timing threshold: with the GIL held through merge() at most one search (the one
    # in flight when it started) can finish inside it; two or more prove it was released
    assert during >= 2, f"only {during} searches finished during the {t1 - t0:.3f} s merge"
    assert idx.pending == {"delta": 0, "tombstones": 0, "wal_records": 0}
    ids, d = idx.search(new[10], 1, L=32)
    assert ids[0] == 50_010 and d[0] < 1e-6


def test_messages_use_python_names_and_os_errors_their_kind(tmp_path, data):
    _, base, _, _ = data
    small = np.ascontiguousarray(base[:300])
    for kwargs, name in [({"R": 0}, "R = 0"), ({"pq_bytes": 0}, "pq_bytes = 0"), ({"alpha": 0.5}, "alpha = 0.5")]:
        with pytest.raises(ValueError) as e:
            ssdann.build(small, tmp_path / "x", **kwargs)
        assert name in str(e.value) and " -" not in str(e.value), str(e.value)
    ssdann.build(small, tmp_path / "a", R=16, L=32, pq_bytes=8)
    with pytest.raises(FileExistsError, match=r"force=True") as e:
        ssdann.build(small, tmp_path / "a", R=16, L=32, pq_bytes=8)
    assert "--force" not in str(e.value)
    with pytest.raises(FileNotFoundError, match="no such index directory"):
        ssdann.Index(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"not an ssdann index directory.*ssdann\.build"):
        ssdann.Index(tmp_path / "empty")
    with pytest.raises(NotADirectoryError):
        ssdann.Index(tmp_path / "a" / "index.ssd")


def test_exceptions_version_and_report_keys(tmp_path, data):
    assert ssdann.CorruptIndexError.__module__ == "ssdann"
    assert "ssdann.CorruptIndexError" in repr(ssdann.CorruptIndexError)
    assert ssdann.IndexLockedError.__module__ == "ssdann"
    assert issubclass(ssdann.IndexLockedError, BlockingIOError)
    pyproject = (REPO / "python" / "pyproject.toml").read_text()
    assert f'version = "{ssdann.__version__}"' in pyproject
    _, base, _, _ = data
    rep = ssdann.build(np.ascontiguousarray(base[:300]), tmp_path / "a", R=16, L=32, pq_bytes=8)
    import re

    bad = [key for key in rep if not re.fullmatch(r"[a-z0-9_]+", key)]
    assert not bad, bad
    assert any(key.startswith("seconds_vamana_pass_") for key in rep), sorted(rep)


PUBLIC = [
    "build",
    "build_plan",
    "build_status",
    "build_partition",
    "build_merge",
    "build_write",
    "distributed.build",
    "distributed.evaluate",
    "distributed.check_shared_filesystem",
    "Index",
    "Index.search",
    "Index.batch_search",
    "Index.insert",
    "Index.delete",
    "Index.merge",
    "read_vectors",
    "write_vectors",
    "read_ground_truth",
    "recall_at_k",
    "plot_eval",
]


def _obj(name):
    obj = ssdann
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def test_help_of_every_public_name_teaches():
    import pydoc

    for name in PUBLIC:
        text = pydoc.render_doc(_obj(name), renderer=pydoc.plaintext)
        for section in ("Raises", "Examples"):
            assert section in text, f"help(ssdann.{name}) has no {section}"
        if name != "Index.merge":
            assert "Parameters" in text, f"help(ssdann.{name}) has no Parameters"
    # shapes and dtypes where arrays go in or out
    assert "(nq, d), float32" in ssdann.Index.batch_search.__doc__
    assert "(nq, k) uint64" in ssdann.Index.batch_search.__doc__
    assert "(n, d)" in ssdann.build.__doc__
    for prop in ["dim", "n", "metric", "dtype", "R", "pq_bytes", "live_count", "pending", "io_backend", "read_only", "last_stats", "centroid"]:
        assert getattr(ssdann.Index, prop).__doc__, f"Index.{prop} has no docstring"
    for exc in (ssdann.CorruptIndexError, ssdann.IndexLockedError):
        assert exc.__doc__ and len(exc.__doc__) > 40


def test_the_docstring_examples_run_as_written(tmp_path, monkeypatch):
    import doctest

    monkeypatch.chdir(tmp_path)
    globs = {}
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    parser = doctest.DocTestParser()
    for name in PUBLIC:
        test = parser.get_doctest(_obj(name).__doc__, globs, name, None, 0)
        assert test.examples, f"ssdann.{name} has no example"
        runner.run(test, clear_globs=False)
        globs.update(test.globs)  # a DocTest runs on a copy: carry its names to the next
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed (output above)"


def test_readers_round_trip_every_format_and_refuse_bad_sizes(tmp_path, data):
    _, base, _, _ = data
    f32 = np.ascontiguousarray(base[:50])
    u8 = (np.arange(50 * 16) % 251).astype(np.uint8).reshape(50, 16)
    i8 = (u8.astype(np.int16) - 128).astype(np.int8)
    for name, arr in [("a.fbin", f32), ("a.u8bin", u8), ("a.i8bin", i8), ("a.fvecs", f32), ("a.bvecs", u8), ("a.npy", i8)]:
        p = tmp_path / name
        ssdann.write_vectors(p, arr)
        for mmap in (True, False):
            got = ssdann.read_vectors(p, mmap=mmap)
            assert got.dtype == arr.dtype and got.shape == arr.shape, name
            assert np.array_equal(got, arr), name
    # ssdann's own reader agrees: the written .fbin builds an index
    ssdann.build(tmp_path / "a.fbin", tmp_path / "idx", R=16, L=32, pq_bytes=8)
    assert ssdann.Index(tmp_path / "idx").n == 50
    # sizes are checked against the header before anything is mapped
    b = (tmp_path / "a.fbin").read_bytes()
    (tmp_path / "short.fbin").write_bytes(b[:-4])
    with pytest.raises(ValueError, match=r"short.fbin: header n = 50, d = 384 needs"):
        ssdann.read_vectors(tmp_path / "short.fbin")
    bv = bytearray((tmp_path / "a.bvecs").read_bytes())
    bv[(4 + 16) * 3] = 15  # row 3 claims d = 15
    (tmp_path / "bad.bvecs").write_bytes(bytes(bv))
    with pytest.raises(ValueError, match="row 3 header d = 15"):
        ssdann.read_vectors(tmp_path / "bad.bvecs")
    with pytest.raises(ValueError, match="unknown extension"):
        ssdann.read_vectors(tmp_path / "a.txt")
    with pytest.raises(FileNotFoundError):
        ssdann.read_vectors(tmp_path / "none.fbin")
    with pytest.raises(ValueError, match=r"holds float32.*astype"):
        ssdann.write_vectors(tmp_path / "x.fbin", f32.astype(np.float64))


def test_read_ground_truth_matches_the_real_file(tmp_path):
    gt = DATA / "gt10k.ibin"
    if not gt.exists():
        pytest.skip("real data absent")
    ids, dists = ssdann.read_ground_truth(gt)
    assert ids.dtype == np.uint32 and dists.dtype == np.float32
    assert ids.shape == dists.shape and np.array_equal(ids, read_ibin(gt))
    assert np.all(np.diff(dists[:, :10], axis=1) >= 0), "nearest first"
    b = gt.read_bytes()
    (tmp_path / "cut.ibin").write_bytes(b[:-1])
    with pytest.raises(ValueError, match="cut.ibin: header nq"):
        ssdann.read_ground_truth(tmp_path / "cut.ibin")


def test_array_likes_are_accepted_the_same_way_everywhere_and_k_beyond_n_is_padded(tmp_path, data):
    _, base, _, _ = data
    small = np.ascontiguousarray(base[:60])
    # any strides: a Fortran-order copy and a strided view build the same index as C order
    ssdann.build(np.asfortranarray(small), tmp_path / "f", R=16, L=32, pq_bytes=8)
    strided = np.ascontiguousarray(base[:120])[::2]
    ssdann.build(strided, tmp_path / "s", R=16, L=32, pq_bytes=8)
    for name, rows in (("f", small), ("s", strided)):
        idx = ssdann.Index(tmp_path / name, read_only=True)
        ids, _ = idx.search(np.ascontiguousarray(rows[7]), 1, L=20)
        assert ids[0] == 7, name
    # a list of Python floats is float64: refused with the hint, as an array would be
    with pytest.raises(ValueError, match="float64.*astype"):
        ssdann.build(small.tolist(), tmp_path / "l")
    idx = ssdann.Index(tmp_path / "f")
    with pytest.raises(ValueError, match="float64.*astype"):
        idx.search(small[0].tolist(), 5)
    ids, _ = idx.search(np.asfortranarray(small[:4])[1], 1)  # a strided row
    assert ids[0] == 1
    ids, _ = idx.batch_search(np.asfortranarray(small[:4]), 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3]
    # one point: a scalar label and a (d,) vector; delete takes a scalar too
    idx.insert(1000, small[5] + 0.25)
    idx.insert(np.uint64(1001), small[6] + 0.25)
    assert idx.pending["delta"] == 2
    idx.delete(1000)
    with pytest.raises(ValueError, match="labels: expected an int or a sequence"):
        idx.delete("seven")
    with pytest.raises(ValueError):
        idx.delete(-1)
    # k > n: rows padded with label 2**64 - 1 and distance inf (documented), like faiss's -1
    ids, dists = idx.search(small[0], 80, L=100)
    live = idx.live_count
    assert live == 61
    assert np.all(ids[:live] != np.iinfo(np.uint64).max)
    assert np.all(ids[live:] == np.iinfo(np.uint64).max) and np.all(np.isinf(dists[live:]))
    bids, bd = idx.batch_search(small[:2], 80, L=100)
    assert np.all(bids[:, live:] == np.iinfo(np.uint64).max) and np.all(np.isinf(bd[:, live:]))


def test_the_ssdann_command_is_installed_with_the_package(tmp_path, data):
    import subprocess
    import sys

    _, base, _, _ = data
    index = tmp_path / "i"
    ssdann.build(np.ascontiguousarray(base[:300]), index, R=16, L=32, pq_bytes=8)

    exe = pathlib.Path(sys.executable).parent / "ssdann"
    assert exe.exists(), f"pip install did not put the ssdann command beside {sys.executable}"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ssdann {ssdann.__version__}"
    info = subprocess.run([str(exe), "info", str(index)], capture_output=True, text=True, check=True)
    assert "300 slots" in info.stdout and "R = 16" in info.stdout, info.stdout
    bad = subprocess.run([str(exe), "info", str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr
    # python -m ssdann is the same program
    mod = subprocess.run([sys.executable, "-m", "ssdann", "--help"], capture_output=True, text=True, check=True)
    assert "build" in mod.stdout and "eval" in mod.stdout
    # piped into a reader that stops early: a quiet end, no panic
    p = subprocess.run(f"'{exe}' --help | head -1", shell=True, capture_output=True, text=True)
    assert "panicked" not in p.stderr


def test_eval_plot_draws_the_curve_and_the_histogram(tmp_path, data):
    import json
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    _, base, q, _ = data
    small = np.ascontiguousarray(base[:2000])
    ssdann.build(small, tmp_path / "i", R=16, L=32, pq_bytes=8)
    ssdann.write_vectors(tmp_path / "q.fbin", np.ascontiguousarray(small[:50]))
    ids = np.arange(50, dtype=np.uint32)[:, None].repeat(10, axis=1)
    with open(tmp_path / "gt.ibin", "wb") as f:  # only column 0 is right; recall@1 uses it
        np.array([50, 10], dtype="<u4").tofile(f)
        ids.tofile(f)
        np.zeros((50, 10), dtype="<f4").tofile(f)
    exe = pathlib.Path(sys.executable).parent / "ssdann"
    png = tmp_path / "eval.png"
    j = tmp_path / "eval.json"
    run = subprocess.run(
        [str(exe), "eval", "--index", str(tmp_path / "i"), "--queries", str(tmp_path / "q.fbin"), "--gt", str(tmp_path / "gt.ibin"),
         "-k", "1", "-L", "10,20,40", "--threads", "1,2", "--json", str(j), "--plot", str(png)],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr + run.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(j.read_text())["rows"]
    assert all(sum(r["latency_hist"]["counts"]) == 50 for r in rows)
    fig = ssdann.plot_eval([j, j], L=20)
    curve, hist = fig.axes
    assert len(curve.get_lines()) == 4, "one line per file and thread count"
    assert len(curve.get_legend().get_texts()) == 4
    marks = [t.get_text() for t in hist.get_legend().get_texts()]
    assert marks[0].startswith("p50 = ") and marks[1].startswith("p99 = ")
    assert "L = 20" in hist.get_title()
    with pytest.raises(ValueError, match="L = 7"):
        ssdann.plot_eval(j, L=7)
    # the plot subcommand, and the Rust binary's answer is a pointer to it
    out = subprocess.run([str(exe), "plot", str(j), "--out", str(tmp_path / "p.png")], capture_output=True, text=True)
    assert out.returncode == 0 and (tmp_path / "p.png").exists(), out.stdout + out.stderr


def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    import re

    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python block"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "'inserted': 1" in out and "Parameters" in out, out[-2000:]


def test_threads_zero_is_refused_not_silently_one(tmp_path, data):
    _, base, _, _ = data
    small = np.ascontiguousarray(base[:300])
    with pytest.raises(ValueError, match="threads = 0"):
        ssdann.build(small, tmp_path / "a", threads=0)
    ssdann.build(small, tmp_path / "a", R=16, L=32, pq_bytes=8)
    idx = ssdann.Index(tmp_path / "a")
    with pytest.raises(ValueError, match="threads"):
        idx.batch_search(small[:3], 5, threads=0)
    ids, _ = idx.batch_search(small[:3], 5, threads=1)
    assert ids[:, 0].tolist() == [0, 1, 2]


def test_recall_at_k_counts_ties_like_big_ann_benchmarks(index, data):
    _, _, q, gt = data
    ids, _ = index.batch_search(q[:200], 10, L=100)
    strict = ssdann.recall_at_k(ids, gt[:200], 10)
    assert strict == pytest.approx(recall(ids, gt[:200])) and strict >= 0.95
    # a duplicate of the 10th neighbour returned in its place counts only with ties
    gt_ids = np.array([[1, 2, 3, 9]])
    d = np.array([[0.1, 0.2, 0.3, 0.3 + 1e-7]], dtype=np.float32)
    assert ssdann.recall_at_k(np.array([[1, 2, 9]]), gt_ids, 3) == pytest.approx(2 / 3)
    assert ssdann.recall_at_k(np.array([[1, 2, 9]]), gt_ids, 3, d) == 1.0
    with pytest.raises(ValueError, match="k = 5"):
        ssdann.recall_at_k(np.array([[1, 2, 9]]), gt_ids, 5)


def test_a_cache_sized_in_bytes_and_chosen_by_samples_keeps_the_results(tmp_path, data):
    _, base, _, _ = data
    x = np.ascontiguousarray(base[:2000])
    ssdann.build(x, tmp_path / "idx", R=32, L=64, pq_bytes=16, threads=1)
    q = x[:50] + 0.01
    plain = ssdann.Index(tmp_path / "idx", read_only=True)
    ids, _ = plain.batch_search(q, 10, L=50, threads=1)
    cached = ssdann.Index(tmp_path / "idx", read_only=True, cache_bytes=2_000_000, cache_samples=300)
    got, _, stats = cached.batch_search(q, 10, L=50, threads=1, return_stats=True)
    assert (got[:, 0] == ids[:, 0]).all()
    assert stats["cache_hits"].sum() > 0


def test_the_type_stubs_name_the_parameters_and_defaults_the_functions_take():
    import ast
    import inspect

    stub = pathlib.Path(ssdann.__file__).with_name("__init__.pyi")
    tree = ast.parse(stub.read_text())
    checked = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not hasattr(ssdann, node.name):
            continue
        try:
            real = inspect.signature(getattr(ssdann, node.name))
        except (TypeError, ValueError):
            continue  # no text signature to compare with
        args = node.args
        stub_params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        assert stub_params == list(real.parameters), node.name
        defaults = dict(zip([a.arg for a in args.kwonlyargs], args.kw_defaults))
        positional = args.posonlyargs + args.args
        defaults.update(zip([a.arg for a in positional[len(positional) - len(args.defaults):]], args.defaults))
        for name, p in real.parameters.items():
            d = defaults.get(name)
            if p.default is inspect.Parameter.empty:
                assert d is None, f"{node.name}({name}): the stub gives a default, the function none"
            else:
                assert d is not None, f"{node.name}({name}): the stub gives no default"
                assert ast.literal_eval(d) == p.default, (node.name, name, ast.unparse(d), p.default)
        checked += 1
    assert checked >= 5, checked
