#!/usr/bin/env python3
"""Budgeted-build report of the peer harness (`run.sh --budget-gib G`): one-shot build vs a
build under a RAM budget that forces partitioning, for ssdann and each DiskANN package, with
the same R, L, α, PQ bytes and build threads, searched at the same L.

Input: a directory holding, for each build NAME (ours-oneshot, ours-budget, rust-oneshot,
rust-budget, ...):
  NAME_build.json  {"system", "mode", "budget_gib", "build_wall_s", "build_peak_rss_bytes",
                    "index_bytes"} written by run.sh (wall and peak RSS from /usr/bin/time)
  NAME_build.log   the build's stdout and stderr (partition / shard counts are read from it)
  NAME_eval.json   ssdann eval --json (ours) or NAME_search.json (peer.py search)
and params.json (run.sh's parameters). Writes budget_report.md and budget_report.json.

Recall@10 counts a result when its id is among the ground truth's first k ids (no credit for
a tied or duplicate vector under another id), the same rule for every system.
"""
import json
import os
import re
import sys

SYSTEMS = {"ours": "ssdann", "cpp": "DiskANN C++ 0.7.0", "rust": "DiskANN Rust 0.49.1"}
RECALL_TOLERANCE = 0.01
MIN_PARTITIONS = 4
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_partitions(system, log):
    """What the build log says about partitioning: {"partitions": int or None, "evidence": [lines]}.

    ssdann prints "partitions N" (a budgeted build; absent from a one-shot one, which is 1).
    DiskANN Rust logs "Full index fits in RAM budget ..." (one shot) or "Insufficient memory
    budget for index build in one shot ..." and then "Partitioned N with replication factor R
    to get M points across K shards"."""
    lines = [ANSI.sub("", line).rstrip() for line in log.splitlines()]
    out = {"partitions": None, "evidence": [], "estimate_gib": None}
    if system == "ours":
        for line in lines:
            m = re.match(r"\s*partitions\s+(\d+)\s*$", line)
            if m:
                out["partitions"] = int(m.group(1))
                out["evidence"].append(line.strip())
            m = re.match(r"\s*RAM estimate of build\s+([\d.]+) MiB", line)
            if m:
                out["estimate_gib"] = float(m.group(1)) / 1024
                out["evidence"].append(line.strip())
        if out["partitions"] is None and any(l.lstrip().startswith("built ") for l in lines):
            out["partitions"] = 1
        return out
    for line in lines:
        body = line.split(": ", 1)[1] if ": " in line else line
        m = re.search(r"Estimated index RAM usage: ([\d.eE+-]+) GB", line)
        if m:
            out["estimate_gib"] = float(m.group(1))
            out["evidence"].append(body)
        if "Full index fits in RAM budget" in line:
            out["partitions"] = 1
            out["evidence"].append(body)
        if "Insufficient memory budget" in line:
            out["evidence"].append(body)
        m = re.search(r"Partitioned (\d+) with replication factor (\d+) to get (\d+) points across (\d+) shards", line)
        if m:
            out["partitions"] = int(m.group(4))
            out["evidence"].append(body)
        if "Starting merge" in line or "Finished merge" in line:
            out["evidence"].append(body)
    return out


def search_rows(out_dir, name):
    """Rows {L, threads, recall, qps, sector_reads} of one build's search."""
    ours = os.path.join(out_dir, f"{name}_eval.json")
    peer = os.path.join(out_dir, f"{name}_search.json")
    if os.path.exists(ours):
        doc = json.load(open(ours))
        cache = doc.get("params", {}).get("cache_nodes", 0)
        return [{"L": r["L"], "threads": r["threads"], "cache_nodes": cache, "recall": r["recall"], "qps": r["qps"],
                 "sector_reads": r["sector_reads"], "p99_us": r.get("p99_us")} for r in doc["rows"]]
    if os.path.exists(peer):
        return [{"L": r["L"], "threads": r["threads"], "cache_nodes": r.get("cache_nodes", 0), "recall": r["recall"],
                 "qps": r["qps"], "sector_reads": r["sector_reads"], "p99_us": r.get("p99_us")}
                for r in json.load(open(peer))["rows"]]
    return []


def load(out_dir):
    params = json.load(open(os.path.join(out_dir, "params.json")))
    builds = []
    for name in params["builds"]:
        path = os.path.join(out_dir, f"{name}_build.json")
        if not os.path.exists(path):
            continue
        b = json.load(open(path))
        logp = os.path.join(out_dir, f"{name}_build.log")
        log = open(logp, errors="replace").read() if os.path.exists(logp) else ""
        b["name"] = name
        b.update(parse_partitions(b["system"], log))
        b["rows"] = search_rows(out_dir, name)
        inner = os.path.join(out_dir, f"{name}_peer.json")
        if os.path.exists(inner):  # peer.py's own timing of build_disk_index (no interpreter start)
            b["peer_internal"] = json.load(open(inner))
        builds.append(b)
    return params, builds


def checks(builds):
    """Per system: partitions of the budgeted build, and recall@k budgeted − one-shot at every L."""
    out = {}
    by = {(b["system"], b["mode"]): b for b in builds}
    for system in dict.fromkeys(b["system"] for b in builds):
        one, bud = by.get((system, "oneshot")), by.get((system, "budget"))
        if one is None or bud is None:
            continue
        r1 = {r["L"]: r["recall"] for r in one["rows"] if r["threads"] == 1}
        r2 = {r["L"]: r["recall"] for r in bud["rows"] if r["threads"] == 1}
        deltas = {L: r2[L] - r1[L] for L in sorted(set(r1) & set(r2))}
        out[system] = {
            "partitions": bud["partitions"],
            "partitioned": bud["partitions"] is not None and bud["partitions"] >= MIN_PARTITIONS,
            "recall_delta": deltas,
            "recall_within_tolerance": bool(deltas) and all(abs(d) <= RECALL_TOLERANCE for d in deltas.values()),
            "build_wall_ratio": bud["build_wall_s"] / one["build_wall_s"],
            "peak_rss_ratio": bud["build_peak_rss_bytes"] / one["build_peak_rss_bytes"],
        }
    return out


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def markdown(params, builds, chk):
    p = params
    out = [f"## Budgeted build vs one-shot ({p['data']}, n = {p['n']:,}, d = {p['dim']})", "",
           f"Commit {p['commit']}, {p['date']}, {p['machine']}. Build: R = {p['R']}, L = {p['build_l']}, "
           f"α = {p['alpha']}, {p['pq_bytes']} PQ bytes, {p['build_threads']} threads. "
           f"Search: k = {p['k']}, W = {p['W']}, 1 thread, no node cache, first {p['nq']} queries. "
           "Build wall and peak RSS from /usr/bin/time (the peers' include the Python interpreter and numpy, ~30 MB). "
           "Reads/query at the device for the peers (/proc/self/io), from the engine's counters for ssdann.", ""]
    ls = sorted({r["L"] for b in builds for r in b["rows"]})
    head = "| build | budget GiB | partitions | build s | peak RSS MiB | index MiB |"
    sep = "|---|---|---|---|---|---|"
    for L in ls:
        head += f" recall@10 L={L} | reads/q L={L} | QPS L={L} |"
        sep += "---|---|---|"
    out += [head, sep]
    for b in builds:
        label = f"{SYSTEMS.get(b['system'], b['system'])} {'one-shot' if b['mode'] == 'oneshot' else 'budgeted'}"
        budget = "—" if b.get("budget_gib") is None else f"{b['budget_gib']:g}"
        row = (f"| {label} | {budget} | {fmt(b['partitions'], 'd')} | {b['build_wall_s']:.1f} | "
               f"{b['build_peak_rss_bytes'] / 2**20:.1f} | {b['index_bytes'] / 2**20:.1f} |")
        rows = {r["L"]: r for r in b["rows"] if r["threads"] == 1}
        for L in ls:
            r = rows.get(L)
            row += (f" {r['recall']:.4f} | {r['sector_reads']:.1f} | {r['qps']:.0f} |" if r else " — | — | — |")
        out.append(row)
    out += ["", f"Checks (budgeted − one-shot; recall tolerance {RECALL_TOLERANCE}, at least {MIN_PARTITIONS} partitions):", ""]
    for system, c in chk.items():
        d = ", ".join(f"L={L}: {v:+.4f}" for L, v in c["recall_delta"].items())
        out.append(f"- {SYSTEMS.get(system, system)}: partitions {fmt(c['partitions'], 'd')} "
                   f"({'ok' if c['partitioned'] else 'NOT PARTITIONED ENOUGH'}); recall Δ {d} "
                   f"({'ok' if c['recall_within_tolerance'] else 'OUTSIDE TOLERANCE'}); "
                   f"build wall {c['build_wall_ratio']:.2f}×, peak RSS {c['peak_rss_ratio']:.2f}×")
    out += ["", "Partitioning evidence from the build logs:", ""]
    for b in builds:
        for line in b["evidence"]:
            out.append(f"- {b['name']}: `{line}`")
    return "\n".join(out) + "\n"


def main(out_dir):
    params, builds = load(out_dir)
    chk = checks(builds)
    md = markdown(params, builds, chk)
    print(md)
    with open(os.path.join(out_dir, "budget_report.md"), "w") as f:
        f.write(md)
    with open(os.path.join(out_dir, "budget_report.json"), "w") as f:
        json.dump({"params": params, "builds": builds,
                   "checks": {s: {**c, "recall_delta": {str(k): v for k, v in c["recall_delta"].items()}}
                              for s, c in chk.items()}}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out"))
