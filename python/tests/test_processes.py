"""One writer per index directory, read-only handles, and indexes used from other processes
(issue 11): multiprocessing with the "fork" start method (an inherited Index must search
exactly as in the parent and refuse updates) and with "spawn" (each worker opens the index
read-only)."""
import multiprocessing

import numpy as np
import pytest

import ssdann

D = 32
K = 10
L = 50
TIMEOUT_S = 120  # a worker stuck on a shared io_uring ring (the bug) fails instead of hanging


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 2,000 × 32 clustered index directory (built once, never opened by this fixture)
    and 64 queries."""
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(16, D)).astype(np.float32)
    x = centres[rng.integers(0, 16, size=2064)] + 0.3 * rng.normal(size=(2064, D)).astype(np.float32)
    base, queries = np.ascontiguousarray(x[:2000]), np.ascontiguousarray(x[2000:])
    out = tmp_path_factory.mktemp("proc") / "idx"
    ssdann.build(base, out, R=24, L=48, pq_bytes=8, threads=2)
    return out, base, queries


# --- worker functions (module level, so that both start methods can find them) ---

_INDEX = None  # the Index a forked worker inherits, or a spawned worker opened


def _open_read_only(path):
    global _INDEX
    _INDEX = ssdann.Index(path, read_only=True)


def _search_one_by_one(queries):
    return np.stack([_INDEX.search(q, K, L=L)[0] for q in queries])


def _batch_search(queries):
    return _INDEX.batch_search(queries, K, L=L, threads=2)[0]


def _try_insert(vector):
    try:
        _INDEX.insert([10_000_000], vector[None, :])
    except PermissionError as e:
        return "PermissionError: " + str(e)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which asserts
        return f"{type(e).__name__}: {e}"
    return "inserted"


def _open_for_writing(path):
    try:
        ssdann.Index(path)
    except ssdann.IndexLockedError as e:
        return "IndexLockedError: " + str(e)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return "opened"


def test_a_second_writer_is_refused_and_read_only_handles_share(small):
    path, base, queries = small
    assert issubclass(ssdann.IndexLockedError, BlockingIOError)
    assert issubclass(ssdann.IndexLockedError, OSError)
    w = ssdann.Index(path)
    assert not w.read_only
    with pytest.raises(ssdann.IndexLockedError, match="cannot open the index to write"):
        ssdann.Index(path)
    with pytest.raises(ssdann.IndexLockedError, match="read-only"):
        ssdann.Index(path, read_only=True)
    with pytest.raises(ssdann.IndexLockedError, match="open in a process"):
        ssdann.build(base, path, R=24, L=48, pq_bytes=8, threads=2, force=True)
    expected, _ = w.batch_search(queries, K, L=L)
    del w  # closes the index and releases the lock
    r1 = ssdann.Index(path, read_only=True)
    r2 = ssdann.Index(path, read_only=True)
    assert r1.read_only and r2.read_only
    with pytest.raises(ssdann.IndexLockedError):
        ssdann.Index(path)
    ids, _ = r2.batch_search(queries, K, L=L)
    np.testing.assert_array_equal(ids, expected)
    with pytest.raises(PermissionError, match="read-only"):
        r1.insert([10_000_000], base[:1])
    with pytest.raises(PermissionError, match="read-only"):
        r1.delete([3])
    with pytest.raises(PermissionError, match="read-only"):
        r1.merge()
    del r1, r2
    ssdann.Index(path)  # a writer again, once every reader closed


def test_forked_workers_search_exactly_like_the_parent_and_refuse_updates(small):
    global _INDEX
    path, base, queries = small
    _INDEX = ssdann.Index(path)  # a writer
    print(f"I/O backend: {_INDEX.io_backend}")  # the fork hazard is io_uring's
    assert _INDEX.io_backend in ("io_uring", "pread")
    try:
        # warm contexts (io_uring rings with registered buffers) in the parent's pool
        expected = _search_one_by_one(queries)
        np.testing.assert_array_equal(_batch_search(queries), expected)
        chunks = np.array_split(queries, 4)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(2) as pool:
            one_by_one = np.concatenate(pool.map_async(_search_one_by_one, chunks).get(TIMEOUT_S))
            batched = np.concatenate(pool.map_async(_batch_search, chunks).get(TIMEOUT_S))
            refused = pool.map_async(_try_insert, [base[0], base[1]]).get(TIMEOUT_S)
        np.testing.assert_array_equal(one_by_one, expected)
        np.testing.assert_array_equal(batched, expected)
        for r in refused:
            assert r.startswith("PermissionError:") and "fork" in r, r
        # the children left the parent's rings alone; the parent still writes
        np.testing.assert_array_equal(_search_one_by_one(queries), expected)
        _INDEX.insert([10_000_001], base[:1])
        assert _INDEX.pending["delta"] == 1
        _INDEX.delete([10_000_001])
    finally:
        _INDEX = None


def test_spawned_workers_open_the_index_read_only(small):
    path, _, queries = small
    chunks = np.array_split(queries, 4)
    ctx = multiprocessing.get_context("spawn")
    parent = ssdann.Index(path)
    expected, _ = parent.batch_search(queries, K, L=L)
    # beside a writer, a spawned worker can open the index neither to write nor to read
    with ctx.Pool(1) as pool:
        r = pool.apply_async(_open_for_writing, (str(path),)).get(TIMEOUT_S)
    assert r.startswith("IndexLockedError:"), r
    del parent
    # with the parent a reader too, read-only workers share the directory
    parent = ssdann.Index(path, read_only=True)
    with ctx.Pool(2, initializer=_open_read_only, initargs=(str(path),)) as pool:
        ids = np.concatenate(pool.map_async(_search_one_by_one, chunks).get(TIMEOUT_S))
        refused = pool.map_async(_try_insert, [queries[0]]).get(TIMEOUT_S)
    np.testing.assert_array_equal(ids, expected)
    assert refused[0].startswith("PermissionError:") and "read-only" in refused[0], refused
    np.testing.assert_array_equal(parent.batch_search(queries, K, L=L)[0], expected)
