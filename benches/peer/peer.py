#!/usr/bin/env python3
"""Microsoft DiskANN side of the peer harness: build or search with one diskannpy package.

Runs inside the virtualenv of one system:
  cpp  = diskannpy 0.7.0 (the C++ DiskANN, libaio, O_DIRECT)
  rust = diskannpy-rust 0.49.1 (the Rust DiskANN, io_uring, O_DIRECT)
Both install a module named `diskannpy`, hence one venv each (`run.sh` makes .venv-cpp and
.venv-rust beside this file).

Writes one JSON file. Reads per query are measured at the device boundary: the delta of
/proc/self/io read_bytes divided by 4096 (the packages' own counters differ in meaning).
"""
import argparse
import json
import os
import resource
import shutil
import struct
import sys
import time

import numpy as np


DTYPES = {"fbin": np.float32, "u8bin": np.uint8, "i8bin": np.int8}


def data_files(data):
    """(base path, query path, numpy dtype) of the first of base.fbin / .u8bin / .i8bin in `data`."""
    for ext, dtype in DTYPES.items():
        base = os.path.join(data, "base." + ext)
        if os.path.exists(base):
            return base, os.path.join(data, "query." + ext), dtype
    raise SystemExit(f"{data}: no base.fbin, base.u8bin or base.i8bin")


def read_bin(path, dtype, limit=None):
    with open(path, "rb") as f:
        n, d = struct.unpack("<II", f.read(8))
        n = n if limit is None else min(n, limit)
        return np.fromfile(f, dtype=dtype, count=n * d).reshape(n, d)


def read_ibin(path):
    with open(path, "rb") as f:
        nq, k = struct.unpack("<II", f.read(8))
        ids = np.fromfile(f, dtype=np.uint32, count=nq * k).reshape(nq, k)
    return ids


def read_bytes():
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    return 0


def recall_at(found, gt, k):
    hits = 0
    for i in range(found.shape[0]):
        hits += len(set(int(x) for x in found[i, :k]) & set(int(x) for x in gt[i, :k]))
    return hits / (found.shape[0] * k)


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def build(args, diskannpy):
    idx = os.path.join(args.work, args.index_name or args.system)
    shutil.rmtree(idx, ignore_errors=True)
    os.makedirs(idx)
    base, _, dtype = data_files(args.data)
    t = time.perf_counter()
    if args.system == "cpp":
        # 0.7.0 has no alpha argument (compiled default 1.2) and sizes PQ from a RAM budget:
        # chunks = floor(search_memory_maximum * 2^30 / n).
        n = struct.unpack("<II", open(base, "rb").read(8))[0]
        budget = (args.pq_bytes + 0.5) * n / 2**30
        diskannpy.build_disk_index(data=base, distance_metric="l2", index_directory=idx, complexity=args.build_l,
                                   graph_degree=args.R, search_memory_maximum=budget, build_memory_maximum=args.build_memory_gib,
                                   num_threads=args.build_threads, pq_disk_bytes=0, vector_dtype=dtype, index_prefix="ann")
    else:
        diskannpy.build_disk_index(data=base, distance_metric="l2", index_directory=idx, complexity=args.build_l,
                                   graph_degree=args.R, build_memory_maximum=args.build_memory_gib, num_threads=args.build_threads,
                                   alpha=args.alpha, build_pq_bytes=0, num_of_pq_chunks=args.pq_bytes,
                                   vector_dtype=dtype, index_prefix="ann")
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"build_wall_s": wall, "build_peak_rss_bytes": rss, "index_bytes": du(idx),
            "note": "peak RSS includes the Python interpreter and numpy (~30 MB)"}


def per_query_latencies(index, q, args, L, threads):
    """(sorted per-query latencies in µs, overlap) of one `index.search` call per query
    from `threads` Python threads; overlap = sum of latencies / threads / wall time."""
    import threading

    lat = [0.0] * q.shape[0]

    def worker(t0):
        for i in range(t0, q.shape[0], threads):
            t = time.perf_counter()
            if args.system == "cpp":
                index.search(q[i], args.k, L, args.W)
            else:
                index.search(q[i], args.k, L)
            lat[i] = (time.perf_counter() - t) * 1e6

    workers = [threading.Thread(target=worker, args=(t0,)) for t0 in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = (time.perf_counter() - start) * 1e6
    return sorted(lat), sum(lat) / threads / wall


def search(args, diskannpy):
    idx = os.path.join(args.work, args.index_name or args.system)
    _, query, dtype = data_files(args.data)
    q = read_bin(query, dtype, args.nq)
    gt = read_ibin(os.path.join(args.data, "gt.ibin"))[: q.shape[0]]
    rows = []
    for cache in args.cache:
        for threads in args.threads:
            # diskannpy 0.7.0 hangs in StaticDiskIndex with num_threads=1: load with 2.
            if args.system == "cpp":
                index = diskannpy.StaticDiskIndex(index_directory=idx, num_threads=max(2, threads), num_nodes_to_cache=cache,
                                                  cache_mechanism=1, distance_metric="l2", vector_dtype=dtype,
                                                  dimensions=q.shape[1], index_prefix="ann")
            else:
                index = diskannpy.StaticDiskIndex(index_directory=idx, num_threads=threads, beam_width=args.W,
                                                  num_nodes_to_cache=cache, distance_metric="l2",
                                                  vector_dtype=dtype, dimensions=q.shape[1], index_prefix="ann")
            for L in args.L:
                if L < args.k:
                    continue

                def run_batch():
                    if args.system == "cpp":
                        r = index.batch_search(q, args.k, L, threads, args.W)
                    else:
                        r = index.batch_search(q, args.k, L, threads)
                    return np.asarray(r[0])

                run_batch()  # warm-up (not timed)
                r0 = read_bytes()
                t = time.perf_counter()
                ids = run_batch()
                wall = time.perf_counter() - t
                reads = (read_bytes() - r0) / 4096 / q.shape[0]
                row = {"threads": threads, "L": L, "cache_nodes": cache, "recall": recall_at(ids, gt, args.k),
                       "qps": q.shape[0] / wall, "sector_reads": reads, "mean_us": wall / q.shape[0] * threads * 1e6}
                # Per-query latencies the way ssdann's eval measures them: one call per query,
                # `threads` callers at once (each takes every threads-th query). The overlap
                # figure (sum of latencies / threads / wall) says whether the calls really ran
                # in parallel (≈ 1) or were serialized, e.g. by the GIL (≈ 1 / threads).
                lat = per_query_latencies(index, q, args, L, threads)
                row["mean_us"] = sum(lat[0]) / len(lat[0])
                row["p99_us"] = lat[0][min(len(lat[0]) - 1, int(round(0.99 * (len(lat[0]) - 1))))]
                row["p50_us"] = lat[0][(len(lat[0]) - 1) // 2]
                row["per_query_overlap"] = lat[1]
                rows.append(row)
                print(f"{args.system} cache={cache} t={threads} L={L} recall={row['recall']:.4f} qps={row['qps']:.0f} reads={reads:.1f}", flush=True)
            del index
    return {"rows": rows}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("action", choices=["build", "search"])
    p.add_argument("--system", choices=["cpp", "rust"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--R", type=int, default=64)
    p.add_argument("--build-l", type=int, default=100)
    p.add_argument("--alpha", type=float, default=1.2)
    p.add_argument("--pq-bytes", type=int, default=48)
    p.add_argument("--index-name", default=None, help="index directory under --work (default: the system's name)")
    p.add_argument("--build-memory-gib", type=float, default=8.0,
                   help="build_memory_maximum in GiB: when the package's own estimate of the one-shot build exceeds it, "
                        "it partitions the data into shards and merges them (budgeted build)")
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--L", type=lambda s: [int(x) for x in s.split(",")], default=[20, 30, 40, 50, 75, 100])
    p.add_argument("--threads", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--cache", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    p.add_argument("--W", type=int, default=4)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--nq", type=int, default=1000)
    args = p.parse_args()
    import diskannpy
    res = build(args, diskannpy) if args.action == "build" else search(args, diskannpy)
    res["system"] = args.system
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
