"""The distributed build and evaluation on a local Ray cluster against one process (issue 15).

    python benches/ray_build_eval.py --data ~/.cache/ssdann-data/pkg-lsa-860k --work /tmp/bench/ray \
        --budget-gib 0.5 --repeats 3

1. `ssdann build --memory-budget B` in one process (all cores): wall time, peak RSS.
2. `ssdann.distributed.build` on a local Ray cluster (ray.cluster_utils.Cluster: a head with no
   CPUs and `--workers` worker nodes of `--cpus-per-worker` CPUs on this machine), the same
   budget and parameters: wall time, the driver's peak RSS (plan, merge, write) and each
   partition task's worker peak RSS.
3. Recall@10 of both indexes with `ssdann eval` (one process) at each L.
4. Evaluation of all queries: `ssdann.distributed.evaluate` across `--workers` actors of one
   search thread each vs `ssdann eval --threads workers` in one process, interleaved,
   `--repeats` times; median QPS and the spread.

Needs the Python package with Ray (pip install './python[ray]') and target/release/ssdann.
Prints a Markdown report; `--json` writes every figure.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import ssdann

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SSDANN = os.path.join(ROOT, "target", "release", "ssdann")


def one_process_build(args, out):
    cmd = [SSDANN, "build", "--data", args.base, "--out", out, "-R", str(args.R), "-L", str(args.L),
           "--pq-bytes", str(args.pq_bytes), "--memory-budget", str(args.budget_gib), "-q", "--force"]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t
    rss = re.search(r"peak RSS of build\s+([\d.]+) MiB", p.stdout)
    parts = re.search(r"partitions\s+(\d+)", p.stdout)
    return {"seconds": wall, "peak_rss_mib": float(rss.group(1)) if rss else None,
            "partitions": int(parts.group(1)) if parts else 1, "stdout": p.stdout}


def cli_eval(args, index, threads, ls):
    cmd = [SSDANN, "eval", "--index", index, "--queries", args.queries, "--gt", args.gt, "-k", "10",
           "-L", ",".join(map(str, ls)), "-W", "4", "--threads", str(threads)]
    if args.nq:
        cmd += ["--nq", str(args.nq)]
    out = os.path.join(args.work, f"eval-{os.path.basename(index)}-{threads}.json")
    p = subprocess.run(cmd + ["--json", out], capture_output=True, text=True, check=True)
    with open(out) as f:
        return json.load(f)["rows"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="data set directory (base.fbin, query.fbin, gt.ibin)")
    ap.add_argument("--work", required=True, help="scratch directory for the indexes")
    ap.add_argument("--budget-gib", type=float, default=0.5)
    ap.add_argument("-R", type=int, default=64)
    ap.add_argument("-L", type=int, default=100)
    ap.add_argument("--pq-bytes", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cpus-per-worker", type=int, default=1)
    ap.add_argument("--eval-L", default="50,100")
    ap.add_argument("--nq", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    args.base = os.path.join(args.data, "base.fbin")
    args.queries = os.path.join(args.data, "query.fbin")
    args.gt = os.path.join(args.data, "gt.ibin")
    os.makedirs(args.work, exist_ok=True)
    ls = [int(x) for x in args.eval_L.split(",")]
    res = {"args": vars(args), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}

    one_dir = os.path.join(args.work, "one")
    print(f"[1] one-process build into {one_dir}", file=sys.stderr)
    res["one"] = one_process_build(args, one_dir)
    print(res["one"]["stdout"], file=sys.stderr)

    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(args.workers):
        cluster.add_node(num_cpus=args.cpus_per_worker)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        dist_dir = os.path.join(args.work, "dist")
        if os.path.exists(dist_dir):
            shutil.rmtree(dist_dir)
        print(f"[2] distributed build into {dist_dir}", file=sys.stderr)
        lines = []

        def progress(line):
            if not line.startswith("[partition") or "done" in line:
                print(line, file=sys.stderr)
            lines.append(line)

        t = time.perf_counter()
        rep = ssdann.distributed.build(
            args.base, dist_dir, memory_budget_gb=args.budget_gib, R=args.R, L=args.L, pq_bytes=args.pq_bytes,
            threads_per_task=args.cpus_per_worker, progress=progress,
        )
        wall = time.perf_counter() - t
        driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
        by_pid = {}
        for r in rep["partitions"]:
            by_pid[r["pid"]] = max(by_pid.get(r["pid"], 0), r["peak_rss_bytes"])
        res["dist"] = {
            "seconds": wall, "partitions": rep["build"]["partitions"], "driver_peak_rss_mib": driver_rss,
            "worker_peak_rss_mib": sorted(v / 2**20 for v in by_pid.values()),
            "plan_seconds": rep["plan"]["seconds"], "merge_seconds": rep["merge"]["seconds"],
            "write_seconds": rep["write"]["seconds"],
            "partition_seconds": [r["seconds"] for r in rep["partitions"]],
            "partition_points": [r["points"] for r in rep["partitions"]],
            "hosts_nodes": sorted({r["node"][:8] for r in rep["partitions"]}),
        }
        print(json.dumps(res["dist"], indent=1)[:2000], file=sys.stderr)

        print("[3] recall of both indexes (ssdann eval, one process)", file=sys.stderr)
        res["recall"] = {name: cli_eval(args, d, 1, ls) for name, d in (("one", one_dir), ("dist", dist_dir))}

        print("[4] evaluation: Ray actors vs one process, interleaved", file=sys.stderr)
        queries = ssdann.read_vectors(args.queries)
        gt_ids, gt_d = ssdann.read_ground_truth(args.gt)
        nq = args.nq or len(queries)
        single_index = ssdann.Index(dist_dir, read_only=True)
        runs = []
        for rep_i in range(args.repeats):
            d = ssdann.distributed.evaluate(dist_dir, queries[:nq], (gt_ids[:nq], gt_d[:nq]), k=10, L=ls, W=4,
                                            workers=args.workers, threads_per_worker=1, verbose=False)
            c = cli_eval(args, dist_dir, args.workers, ls)
            # Exactly one process's ids (checked on the first repeat: the search is deterministic).
            same = rep_i > 0 or all(
                np.array_equal(d["ids"][l], single_index.batch_search(queries[:nq], 10, L=l, W=4, threads=2)[0]) for l in ls)
            runs.append({"ray": [{k: r[k] for k in ("L", "recall", "qps", "mean_us", "p99_us", "sector_reads", "qps_per_worker")} for r in d["rows"]],
                         "one": [{k: r[k] for k in ("L", "recall", "qps", "mean_us", "p99_us", "sector_reads")} for r in c],
                         "ids_equal": same})
            print(json.dumps(runs[-1]), file=sys.stderr)
        res["eval"] = runs
    finally:
        ray.shutdown()
        cluster.shutdown()

    # Report.
    o, d = res["one"], res["dist"]
    print(f"\n### Ray build and evaluation — {res['date']}\n")
    print(f"`python benches/ray_build_eval.py --data {args.data} --budget-gib {args.budget_gib} --workers {args.workers} "
          f"--cpus-per-worker {args.cpus_per_worker} --repeats {args.repeats}`; R = {args.R}, L = {args.L}, "
          f"{args.pq_bytes} PQ bytes.\n")
    print("| build | partitions | wall s | peak RSS MiB | " + " | ".join(f"recall@10 L={l}" for l in ls) + " |")
    print("|---|---|---|---|" + "---|" * len(ls))
    rec = {name: {r["L"]: r["recall"] for r in rows} for name, rows in res["recall"].items()}
    print(f"| one process (`ssdann build --memory-budget`) | {o['partitions']} | {o['seconds']:.1f} | {o['peak_rss_mib']:.0f} | "
          + " | ".join(f"{rec['one'][l]:.4f}" for l in ls) + " |")
    print(f"| Ray, {args.workers} worker nodes × {args.cpus_per_worker} CPU | {d['partitions']} | {d['seconds']:.1f} | "
          f"driver {d['driver_peak_rss_mib']:.0f}; workers {', '.join(f'{x:.0f}' for x in d['worker_peak_rss_mib'])} | "
          + " | ".join(f"{rec['dist'][l]:.4f}" for l in ls) + " |")
    print(f"\nRay build: plan {d['plan_seconds']:.1f} s, partitions (sum of task times) {sum(d['partition_seconds']):.1f} s "
          f"on {len(d['hosts_nodes'])} nodes, merge {d['merge_seconds']:.1f} s, write {d['write_seconds']:.1f} s.\n")
    print("| L | Ray QPS (median, min–max) | one-process QPS | ratio | Ray recall | one recall | same ids |")
    print("|---|---|---|---|---|---|---|")
    for i, l in enumerate(ls):
        rq = [r["ray"][i]["qps"] for r in res["eval"]]
        oq = [r["one"][i]["qps"] for r in res["eval"]]
        ratios = [a / b for a, b in zip(rq, oq)]
        print(f"| {l} | {statistics.median(rq):.0f} ({min(rq):.0f}–{max(rq):.0f}) | {statistics.median(oq):.0f} "
              f"({min(oq):.0f}–{max(oq):.0f}) | {statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) | "
              f"{res['eval'][0]['ray'][i]['recall']:.4f} | {res['eval'][0]['one'][i]['recall']:.4f} | "
              f"{all(r['ids_equal'] for r in res['eval'])} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
