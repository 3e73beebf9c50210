"""Readers and writers of the vector and ground-truth files ANN benchmarks use.

Formats, chosen by the file's extension (the same ones ``ssdann build`` reads):

- ``.fbin`` / ``.u8bin`` / ``.i8bin`` (big-ann-benchmarks): u32 n, u32 d, then n × d
  float32 / uint8 / int8, row-major.
- ``.fvecs`` / ``.bvecs`` (TEXMEX): every row is an int32 d followed by d float32 / uint8.
- ``.npy``: a 2-D C-order array of float32, uint8 or int8.
- Ground truth ``.ibin`` (big-ann-benchmarks): u32 nq, u32 k, nq × k uint32 ids, then
  nq × k float32 distances; ``.u64bin`` is the same with uint64 ids (``ssdann search
  --out``).

Every count read from a file is checked against the file's real size before anything is
mapped; a mismatch raises ``ValueError`` naming the file, the field and the value.
"""
import os
from typing import Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_BIN = {".fbin": np.float32, ".u8bin": np.uint8, ".i8bin": np.int8}
_VECS = {".fvecs": np.float32, ".bvecs": np.uint8}
_HEADER = np.dtype("<u4")


def _ext(path: PathLike) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def _size(path: PathLike) -> int:
    return os.stat(path).st_size  # FileNotFoundError / NotADirectoryError as the OS says


def read_vectors(path: PathLike, *, mmap: bool = True) -> np.ndarray:
    """Read a vector file into an (n, d) numpy array.

    Parameters
    ----------
    path : str or os.PathLike
        A .fbin, .u8bin, .i8bin, .fvecs, .bvecs or .npy file.
    mmap : bool, default True
        Map the file instead of reading it (read-only, no copy; pages load on first use).
        .fvecs / .bvecs come back as a strided view that skips each row's header; pass it
        through ``np.ascontiguousarray`` for a contiguous copy.

    Returns
    -------
    numpy.ndarray
        Shape (n, d); dtype float32 (.fbin, .fvecs, float32 .npy), uint8 (.u8bin, .bvecs)
        or int8 (.i8bin).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        An unknown extension, or counts that disagree with the file's size (the message
        names the file, field and value).

    Examples
    --------
    >>> x = np.arange(12, dtype=np.float32).reshape(4, 3)
    >>> ssdann.write_vectors("v.fbin", x)
    >>> ssdann.read_vectors("v.fbin").shape
    (4, 3)
    """
    ext = _ext(path)
    if ext not in _BIN and ext not in _VECS and ext != ".npy":
        raise ValueError(
            f"{os.fspath(path)}: unknown extension {ext!r} (expected .fbin, .u8bin, .i8bin, .fvecs, .bvecs or .npy)"
        )
    size = _size(path)
    if ext in _BIN:
        dt = np.dtype(_BIN[ext])
        if size < 8:
            raise ValueError(f"{os.fspath(path)}: {size} bytes, shorter than the 8-byte header")
        n, d = (int(v) for v in np.fromfile(path, dtype=_HEADER, count=2))
        if d == 0:
            raise ValueError(f"{os.fspath(path)}: header field d = 0")
        want = 8 + n * d * dt.itemsize
        if want != size:
            raise ValueError(
                f"{os.fspath(path)}: header n = {n}, d = {d} needs {want} bytes, the file has {size}"
            )
        if mmap:
            return np.memmap(path, dtype=dt, mode="r", offset=8, shape=(n, d))
        with open(path, "rb") as f:
            f.seek(8)
            return np.fromfile(f, dtype=dt, count=n * d).reshape(n, d)
    if ext in _VECS:
        dt = np.dtype(_VECS[ext])
        if size < 4:
            raise ValueError(f"{os.fspath(path)}: {size} bytes, shorter than one row's 4-byte header")
        d = int(np.fromfile(path, dtype="<i4", count=1)[0])
        if d <= 0:
            raise ValueError(f"{os.fspath(path)}: row 0 header d = {d}")
        row = 4 + d * dt.itemsize
        if size % row:
            raise ValueError(
                f"{os.fspath(path)}: {size} bytes is not a whole number of {row}-byte rows (d = {d})"
            )
        n = size // row
        raw = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, row)) if mmap else np.fromfile(path, dtype=np.uint8).reshape(n, row)
        dims = raw[:, :4].copy().view("<i4").ravel()
        bad = np.flatnonzero(dims != d)
        if bad.size:
            raise ValueError(f"{os.fspath(path)}: row {int(bad[0])} header d = {int(dims[bad[0]])}, row 0 has d = {d}")
        return raw[:, 4:].view(dt)
    a = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)  # .npy
    if a.ndim != 2:
        raise ValueError(f"{os.fspath(path)}: shape {a.shape}, expected 2-D (n, d)")
    return a


def write_vectors(path: PathLike, vectors: np.ndarray) -> None:
    """Write an (n, d) array as a vector file of the format the extension names.

    Parameters
    ----------
    path : str or os.PathLike
        .fbin (float32), .u8bin (uint8), .i8bin (int8), .fvecs (float32), .bvecs (uint8)
        or .npy (float32, uint8 or int8).
    vectors : numpy.ndarray
        Shape (n, d) of the dtype the format holds; no conversion is made.

    Raises
    ------
    ValueError
        An unknown extension, a shape that is not 2-D, or a dtype the format does not hold
        (convert first, e.g. ``x.astype(np.float32)``).

    Examples
    --------
    >>> ssdann.write_vectors("q.u8bin", np.zeros((2, 8), dtype=np.uint8))
    >>> ssdann.read_vectors("q.u8bin").dtype
    dtype('uint8')
    """
    ext = _ext(path)
    a = np.asarray(vectors)
    if a.ndim != 2:
        raise ValueError(f"vectors: shape {a.shape}, expected 2-D (n, d)")
    want = _BIN.get(ext) or _VECS.get(ext)
    if ext == ".npy":
        if a.dtype not in (np.float32, np.uint8, np.int8):
            raise ValueError(f"vectors: dtype {a.dtype} (a .npy for ssdann holds float32, uint8 or int8)")
        np.save(path, np.ascontiguousarray(a), allow_pickle=False)
        return
    if want is None:
        raise ValueError(
            f"{os.fspath(path)}: unknown extension {ext!r} (expected .fbin, .u8bin, .i8bin, .fvecs, .bvecs or .npy)"
        )
    if a.dtype != want:
        raise ValueError(
            f"vectors: dtype {a.dtype}, but {ext} holds {np.dtype(want).name} (convert with .astype(np.{np.dtype(want).name}))"
        )
    n, d = a.shape
    with open(path, "wb") as f:
        if ext in _BIN:
            np.array([n, d], dtype=_HEADER).tofile(f)
            np.ascontiguousarray(a).tofile(f)
        else:
            rows = np.empty((n, 4 + d * a.itemsize), dtype=np.uint8)
            rows[:, :4] = np.array([d], dtype="<i4").view(np.uint8)
            rows[:, 4:] = np.ascontiguousarray(a).view(np.uint8).reshape(n, -1)
            rows.tofile(f)


def read_ground_truth(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a ground-truth (or ``ssdann search --out``) file.

    Parameters
    ----------
    path : str or os.PathLike
        .ibin (uint32 ids) or .u64bin (uint64 ids): u32 nq, u32 k, nq × k ids, then nq × k
        float32 distances.

    Returns
    -------
    ids : numpy.ndarray
        (nq, k) uint32 (.ibin) or uint64 (.u64bin), nearest first.
    distances : numpy.ndarray
        (nq, k) float32 in the metric of the file's maker (big-ann-benchmarks: L2 or
        squared L2 by data set; ``ssdann gt``: squared L2).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        An unknown extension, or nq × k that disagrees with the file's size.

    Examples
    --------
    >>> ids, dists = ssdann.read_ground_truth(gt_path)  # doctest: +SKIP
    >>> recall = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, ids)])  # doctest: +SKIP
    """
    ext = _ext(path)
    id_dt = {".ibin": np.dtype("<u4"), ".u64bin": np.dtype("<u8")}.get(ext)
    if id_dt is None:
        raise ValueError(f"{os.fspath(path)}: unknown extension {ext!r} (expected .ibin or .u64bin)")
    size = _size(path)
    if size < 8:
        raise ValueError(f"{os.fspath(path)}: {size} bytes, shorter than the 8-byte header")
    nq, k = (int(v) for v in np.fromfile(path, dtype=_HEADER, count=2))
    want = 8 + nq * k * (id_dt.itemsize + 4)
    if want != size:
        raise ValueError(
            f"{os.fspath(path)}: header nq = {nq}, k = {k} needs {want} bytes, the file has {size}"
        )
    with open(path, "rb") as f:
        f.seek(8)
        ids = np.fromfile(f, dtype=id_dt, count=nq * k).reshape(nq, k)
        dists = np.fromfile(f, dtype="<f4", count=nq * k).reshape(nq, k)
    return ids, dists


def recall_at_k(ids: np.ndarray, gt_ids: np.ndarray, k: int, gt_distances: "np.ndarray | None" = None) -> float:
    """recall@k of search results against ground truth, as big-ann-benchmarks computes it.

    Parameters
    ----------
    ids : numpy.ndarray
        (nq, ≥ k) labels returned by ``Index.batch_search``, nearest first.
    gt_ids : numpy.ndarray
        (nq, K ≥ k) true neighbour ids (``read_ground_truth``), nearest first.
    k : int
        The k of recall@k.
    gt_distances : numpy.ndarray, optional
        (nq, K) true distances. When given, ties count (``compute_recall_with_distance_ties``):
        the true set of a query is its first k ids plus every later one whose distance is
        within 1e-6 of the k-th — real data has exact duplicates, and a returned duplicate of
        a true neighbour is a correct answer. Without it, strict id match.

    Returns
    -------
    float
        The mean over queries of |returned top k ∩ true set| / k.

    Raises
    ------
    ValueError
        Shapes that disagree (row counts, fewer than k columns).

    Examples
    --------
    >>> ssdann.recall_at_k(np.array([[1, 7]]), np.array([[1, 2, 7]]), 2)
    0.5
    >>> ssdann.recall_at_k(np.array([[1, 7]]), np.array([[1, 2, 7]]), 2, np.array([[0.5, 1.0, 1.0]]))
    1.0
    """
    ids = np.asarray(ids)
    gt_ids = np.asarray(gt_ids)
    if ids.ndim != 2 or gt_ids.ndim != 2 or ids.shape[0] != gt_ids.shape[0]:
        raise ValueError(f"ids {ids.shape} and gt_ids {gt_ids.shape}: expected (nq, ·) arrays with the same nq")
    if ids.shape[1] < k or gt_ids.shape[1] < k or k < 1:
        raise ValueError(f"k = {k}: ids have {ids.shape[1]} columns and gt_ids {gt_ids.shape[1]}; both need ≥ k ≥ 1")
    if gt_distances is not None:
        gt_distances = np.asarray(gt_distances)
        if gt_distances.shape != gt_ids.shape:
            raise ValueError(f"gt_distances {gt_distances.shape} must have the shape of gt_ids {gt_ids.shape}")
    hits = 0
    for q in range(ids.shape[0]):
        end = k
        if gt_distances is not None:
            kth = gt_distances[q, k - 1]
            while end < gt_ids.shape[1] and abs(gt_distances[q, end] - kth) < 1e-6:
                end += 1
        truth = set(gt_ids[q, :end].tolist())
        hits += sum(1 for x in ids[q, :k].tolist() if x in truth)
    return hits / (ids.shape[0] * k)
