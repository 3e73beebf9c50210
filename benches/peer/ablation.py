#!/usr/bin/env python3
"""Ablation table for issue 13: each search switch alone and together, at matched recall.

    benches/peer/ablation.py --ssdann target/release/ssdann --index IDX --queries Q --gt GT \
        [--nq 2000] [-L 20,30,40,50,75,100,150] [--threads 1] [--repeats 3] [--out DIR] \
        [--config NAME=FLAGS ...] [--pq-index NAME=IDX ...]

Every configuration runs `ssdann eval` over the same L sweep; the repeats are interleaved
(config A, B, C, A, B, C, ...) so that a slow spell of the machine hits all of them. For
each configuration and target recall@10 (0.95, 0.98) the figures are interpolated linearly
in recall between the two L values that bracket the target: reads, rounds (hops), CPU µs per
query (mean latency minus time waiting for reads), QPS, mean / p50 / p99 latency. QPS and the
latencies are the median of the repeats, with their spread (min–max) beside QPS; reads and
rounds do not depend on timing and come from the first repeat. A configuration that never
reaches a target shows "—". Writes ablation.md and ablation.json into --out.

--config NAME=FLAGS adds a configuration searched with extra `eval` switches (default: the
set below); --pq-index NAME=IDX adds one searched on another index (e.g. built with more PQ
bytes), with no extra switches.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

# The default loop has the dynamic beam and look-ahead rounds; the hidden --no-* levers take
# them out for A/B rows.
DEFAULT_CONFIGS = [
    ("plain rounds of W (no dynamic beam, no look-ahead)", "--no-dynamic-beam --no-look-ahead"),
    ("DiskANN behaviour (plain rounds, no sector reuse)", "--no-dynamic-beam --no-look-ahead --no-sector-reuse"),
    ("default loop, no navigation graph", "--nav-nodes 0"),
    ("the defaults (default loop + the index's navigation.bin)", ""),
    ("the defaults + early termination 1.15", "--termination-ratio 1.15"),
]
TARGETS = (0.95, 0.98)
FIELDS = ("sector_reads", "hops", "cpu_us", "qps", "mean_us", "p50_us", "p99_us")


def at_recall(rows, target, field):
    """Linear interpolation of `field` at recall `target` over rows sorted by L."""
    rows = sorted(rows, key=lambda r: r["L"])
    for a, b in zip(rows, rows[1:]):
        if a["recall"] <= target <= b["recall"] and b["recall"] > a["recall"]:
            t = (target - a["recall"]) / (b["recall"] - a["recall"])
            return a[field] + t * (b[field] - a[field])
    if rows and rows[0]["recall"] >= target:
        return rows[0][field]  # the smallest L already reaches it
    return None


def run_eval(args, index, flags, json_path):
    cmd = [args.ssdann, "eval", "--index", index, "--queries", args.queries, "--gt", args.gt,
           "-k", "10", "-W", "4", "-L", args.L, "--threads", args.threads, "--nq", str(args.nq),
           "--json", json_path] + flags.split()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(json_path) as f:
        rows = json.load(f)["rows"]
    for r in rows:
        r["cpu_us"] = r["mean_us"] - r["io_wait_us"]
    return rows


def fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ssdann", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("-L", default="20,30,40,50,75,100,150")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="ablation-out")
    ap.add_argument("--config", action="append", default=[], help="NAME=FLAGS")
    ap.add_argument("--pq-index", action="append", default=[], help="NAME=IDX")
    args = ap.parse_args()
    if "," in args.threads:
        sys.exit("--threads: one thread count per ablation run")
    configs = [(n, args.index, f) for n, f in DEFAULT_CONFIGS] if not args.config else []
    for c in args.config:
        name, _, flags = c.partition("=")
        configs.append((name, args.index, flags))
    for c in args.pq_index:
        name, _, idx = c.partition("=")
        configs.append((name, idx, ""))
    os.makedirs(args.out, exist_ok=True)
    runs = {name: [] for name, _, _ in configs}
    for rep in range(args.repeats):
        for i, (name, index, flags) in enumerate(configs):
            print(f"repeat {rep + 1}/{args.repeats}: {name}", file=sys.stderr, flush=True)
            runs[name].append(run_eval(args, index, flags, os.path.join(args.out, f"c{i}_r{rep}.json")))
    table = []
    for name, index, flags in configs:
        for target in TARGETS:
            per_rep = [{f: at_recall(rows, target, f) for f in FIELDS} for rows in runs[name]]
            row = {"config": name, "index": index, "flags": flags, "recall": target}
            for f in FIELDS:
                vals = [p[f] for p in per_rep if p[f] is not None]
                row[f] = statistics.median(vals) if vals else None
                if f == "qps":
                    row["qps_min"] = min(vals) if vals else None
                    row["qps_max"] = max(vals) if vals else None
            row["sector_reads"] = per_rep[0]["sector_reads"]
            row["hops"] = per_rep[0]["hops"]
            table.append(row)
    base = {t: next(r for r in table if r["recall"] == t) for t in TARGETS}
    lines = [
        f"threads {args.threads}, k = 10, W = 4, {args.nq} queries, L swept over {args.L}, "
        f"{args.repeats} interleaved repeats (QPS / latency: median, QPS spread min–max)",
        "",
        "| configuration | recall@10 | reads | × first row | rounds | CPU µs | QPS (spread) | mean µs | p50 µs | p99 µs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        b = base[r["recall"]]["sector_reads"]
        ratio = None if r["sector_reads"] is None or not b else r["sector_reads"] / b
        spread = "" if r["qps"] is None else f" ({r['qps_min']:.0f}–{r['qps_max']:.0f})"
        lines.append(
            f"| {r['config']} | {r['recall']:.2f} | {fmt(r['sector_reads'])} | {fmt(ratio, 2)} | "
            f"{fmt(r['hops'])} | {fmt(r['cpu_us'], 0)} | {fmt(r['qps'], 0)}{spread} | "
            f"{fmt(r['mean_us'], 0)} | {fmt(r['p50_us'], 0)} | {fmt(r['p99_us'], 0)} |"
        )
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(args.out, "ablation.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(args.out, "ablation.json"), "w") as f:
        json.dump({"params": vars(args), "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
