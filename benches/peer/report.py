#!/usr/bin/env python3
"""Merge the peer harness results: one table for ssdann and Microsoft DiskANN, ratios
(ours / DiskANN) at matched recall@10, a JSON file and a recall–QPS plot (PNG).

Input: a directory holding ours_build.json, ours_eval_c*.json (from `ssdann eval --json`),
{cpp,rust}_build.json and {cpp,rust}_search.json (from peer.py). With `run.sh --repeats N` the
search files carry a repeat suffix (ours_eval_c0_r2.json, rust_search_r2.json): each ratio is
then the median of the per-repeat ratios, shown with its spread (min–max), and the
per-system figures are medians over the repeats.
"""
import glob
import json
import os
import re
import statistics
import sys

TARGETS = (0.90, 0.95, 0.98)
SYSTEMS = {"ours": "ssdann", "cpp": "DiskANN C++ 0.7.0", "rust": "DiskANN Rust 0.49.1"}


def repeat_of(path):
    """The repeat number in a result file's name (`..._r3.json` → 3), 0 without one."""
    m = re.search(r"_r(\d+)\.json$", path)
    return int(m.group(1)) if m else 0


def load_ours_rows(out_dir):
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "ours_eval_c*.json"))):
        with open(path) as f:
            doc = json.load(f)
        cache = doc["params"].get("cache_nodes", 0)
        for r in doc["rows"]:
            rows.append({"threads": r["threads"], "L": r["L"], "cache_nodes": cache, "recall": r["recall"], "qps": r["qps"],
                         "mean_us": r["mean_us"], "p99_us": r["p99_us"], "sector_reads": r["sector_reads"],
                         "repeat": repeat_of(path)})
    return rows


def interpolate(rows, target, key):
    """Linear interpolation of `key` at recall `target` along the curve (sorted by recall).
    None when the target is outside the measured range."""
    pts = sorted((r["recall"], r[key]) for r in rows if r.get(key) is not None)
    for (r0, v0), (r1, v1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return v0
            return v0 + (v1 - v0) * (target - r0) / (r1 - r0)
    return None


def select(rows, threads, cache):
    return [r for r in rows if r["threads"] == threads and r["cache_nodes"] == cache]


def load(out_dir):
    res = {"ours": {"build": json.load(open(os.path.join(out_dir, "ours_build.json"))), "rows": load_ours_rows(out_dir)}}
    for s in ("cpp", "rust"):
        b = os.path.join(out_dir, f"{s}_build.json")
        qs = sorted(glob.glob(os.path.join(out_dir, f"{s}_search.json")) + glob.glob(os.path.join(out_dir, f"{s}_search_r*.json")))
        if os.path.exists(b) and qs:
            rows = []
            for q in qs:
                for r in json.load(open(q))["rows"]:
                    rows.append(dict(r, repeat=repeat_of(q)))
            res[s] = {"build": json.load(open(b)), "rows": rows}
    return res


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratios(res, threads, cache):
    """Per peer and target recall: for qps, mean_us, p99_us and sector_reads, ours and the
    peer's interpolated figures (medians over repeats) and the median of the per-repeat
    ratios with its min and max."""
    out = {}
    ours_all = select(res["ours"]["rows"], threads, cache)
    for s in ("cpp", "rust"):
        if s not in res:
            continue
        peer_all = select(res[s]["rows"], threads, cache)
        reps = sorted({r["repeat"] for r in ours_all} & {r["repeat"] for r in peer_all}) or [0]
        out[s] = {}
        for t in TARGETS:
            entry = {}
            for key in ("qps", "mean_us", "p99_us", "sector_reads"):
                a_s, b_s, r_s = [], [], []
                for rep in reps:
                    a = interpolate([r for r in ours_all if r["repeat"] == rep], t, key)
                    b = interpolate([r for r in peer_all if r["repeat"] == rep], t, key)
                    a_s.append(a)
                    b_s.append(b)
                    r_s.append(a / b if a is not None and b else None)
                good = [x for x in r_s if x is not None]
                entry[key] = {"ours": _median(a_s), "peer": _median(b_s), "ratio": _median(r_s),
                              "ratio_min": min(good) if good else None, "ratio_max": max(good) if good else None,
                              "repeats": len(good)}
            out[s][f"{t:.2f}"] = entry
        bo, bp = res["ours"]["build"], res[s]["build"]
        out[s]["build"] = {k: {"ours": bo[k], "peer": bp[k], "ratio": bo[k] / bp[k]} for k in ("build_wall_s", "build_peak_rss_bytes", "index_bytes")}
    return out


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def print_report(res, rat, pq_bytes=48):
    print(f"\n== build (R=64, L=100, α=1.2, {pq_bytes} PQ bytes, 2 threads)")
    print(f"{'system':<22} {'wall s':>8} {'peak RSS MiB':>13} {'index MiB':>10}")
    for s in res:
        b = res[s]["build"]
        print(f"{SYSTEMS[s]:<22} {b['build_wall_s']:>8.1f} {b['build_peak_rss_bytes'] / 2**20:>13.1f} {b['index_bytes'] / 2**20:>10.1f}")
    print("\n== search (k=10, W=4): every measured point")
    print(f"{'system':<22} {'rep':>3} {'thr':>3} {'cache':>5} {'L':>4} {'recall':>7} {'QPS':>7} {'mean_us':>8} {'p99_us':>8} {'reads':>7}")
    for s in res:
        for r in sorted(res[s]["rows"], key=lambda r: (r["cache_nodes"], r["threads"], r["L"], r.get("repeat", 0))):
            print(f"{SYSTEMS[s]:<22} {r.get('repeat', 0):>3} {r['threads']:>3} {r['cache_nodes']:>5} {r['L']:>4} {r['recall']:>7.4f} {r['qps']:>7.0f} "
                  f"{fmt(r.get('mean_us'), '.0f'):>8} {fmt(r.get('p99_us'), '.0f'):>8} {r['sector_reads']:>7.1f}")
    for (threads, cache), rr in rat.items():
        print(f"\n== ratios ours / DiskANN at matched recall@10 (threads {threads}, cache {cache}; median of repeats (min–max))")
        print(f"{'peer':<22} {'recall':>6} {'QPS':>26} {'mean latency':>26} {'p99 latency':>26} {'reads/query':>18}")
        for s, per in rr.items():
            for t in TARGETS:
                e = per[f"{t:.2f}"]

                def cell(k, spec):
                    c = f"{fmt(e[k]['ours'], spec)}/{fmt(e[k]['peer'], spec)}={fmt(e[k]['ratio'], '.2f')}"
                    if e[k]["repeats"] > 1:
                        c += f" ({fmt(e[k]['ratio_min'], '.2f')}–{fmt(e[k]['ratio_max'], '.2f')})"
                    return c
                print(f"{SYSTEMS[s]:<22} {t:>6.2f} {cell('qps', '.0f'):>26} {cell('mean_us', '.0f'):>26} {cell('p99_us', '.0f'):>26} {cell('sector_reads', '.1f'):>18}")
            b = per["build"]
            print(f"{SYSTEMS[s]:<22} build wall {b['build_wall_s']['ratio']:.2f}×, peak RSS {b['build_peak_rss_bytes']['ratio']:.2f}×, index size {b['index_bytes']['ratio']:.2f}×")


def plot(res, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, threads in zip(axes, (1, 2)):
        for s in res:
            for cache, style in ((0, "-o"), (max([r["cache_nodes"] for r in res[s]["rows"]] or [0]), "--s")):
                rows = sorted(select(res[s]["rows"], threads, cache), key=lambda r: r["recall"])
                if rows and (cache == 0 or style == "--s" and cache > 0):
                    ax.plot([r["recall"] for r in rows], [r["qps"] for r in rows], style, label=f"{SYSTEMS[s]} cache {cache}")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("QPS")
        ax.set_yscale("log")
        ax.set_title(f"{threads} search thread(s), W=4")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(out_dir, pq_bytes=48):
    res = load(out_dir)
    caches = sorted({r["cache_nodes"] for r in res["ours"]["rows"]})
    rat = {(t, c): ratios(res, t, c) for t in (1, 2) for c in caches}
    print_report(res, rat, pq_bytes)
    with open(os.path.join(out_dir, "peer_report.json"), "w") as f:
        json.dump({"results": res, "ratios": {f"threads{t}_cache{c}": v for (t, c), v in rat.items()}}, f, indent=1)
    try:
        plot(res, os.path.join(out_dir, "recall_qps.png"))
        print(f"\nplot: {os.path.join(out_dir, 'recall_qps.png')}")
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 48)
