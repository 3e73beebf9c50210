"""The same index searched from Python ``Index.batch_search``, ``ssdann eval`` and ``ssdann
search``, interleaved, at one L / W / thread count: QPS (median, min–max of the repeats) and
recall@10 of each (issue 28: the three must agree in recall and be within 5% in QPS).

    python benches/surfaces.py --index IDX --data DIR [--ssdann BIN] [-L 50] [--threads 2]

DIR holds query.fbin and gt.ibin. Needs the ssdann Python package and numpy.
"""
import argparse, json, re, subprocess, tempfile, time
from pathlib import Path

import numpy as np
import ssdann


def fbin(p):
    n, d = np.fromfile(p, dtype=np.uint32, count=2)
    return np.fromfile(p, dtype=np.float32, offset=8).reshape(n, d)


def ibin(p):
    n, k = np.fromfile(p, dtype=np.uint32, count=2)
    return np.fromfile(p, dtype=np.uint32, offset=8, count=n * k).reshape(n, k)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--ssdann", default="ssdann")
    ap.add_argument("-L", type=int, default=50)
    ap.add_argument("-W", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nq", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    qf, gf = str(Path(a.data) / "query.fbin"), str(Path(a.data) / "gt.ibin")
    q = np.ascontiguousarray(fbin(qf)[: a.nq])
    nq = len(q)
    gt = ibin(gf)[:nq, :10]

    def recall(ids):
        return float(np.mean([len(set(x[:10]) & set(y)) / 10 for x, y in zip(ids.astype(np.int64), gt)]))

    tmp = Path(tempfile.mkdtemp())
    common = ["-k", "10", "-L", str(a.L), "-W", str(a.W), "--threads", str(a.threads)]
    idx = ssdann.Index(a.index, read_only=True)
    idx.batch_search(q[:500], 10, L=a.L, W=a.W, threads=a.threads)  # warm-up
    rows = {"python batch_search": [], "ssdann eval": [], "ssdann search": []}
    for _ in range(a.repeats):
        t = time.perf_counter()
        ids, _ = idx.batch_search(q, 10, L=a.L, W=a.W, threads=a.threads)
        rows["python batch_search"].append((nq / (time.perf_counter() - t), recall(ids)))
        subprocess.run([a.ssdann, "eval", "--index", a.index, "--queries", qf, "--gt", gf, *common,
                        "--nq", str(nq), "--json", str(tmp / "e.json")], check=True, capture_output=True)
        r = json.load(open(tmp / "e.json"))["rows"][0]
        rows["ssdann eval"].append((r["qps"], r["recall"]))
        out = subprocess.run([a.ssdann, "search", "--index", a.index, "--queries", qf, *common,
                              "--out", str(tmp / "s.ibin")], check=True, capture_output=True, text=True)
        m = re.search(r"\(([\d.]+) QPS\)", out.stderr + out.stdout)
        rows["ssdann search"].append((float(m.group(1)), recall(ibin(tmp / "s.ibin")[:nq])))
    base = sorted(x[0] for x in rows["ssdann eval"])[a.repeats // 2]
    for name, v in rows.items():
        qps = sorted(x[0] for x in v)
        med = qps[a.repeats // 2]
        print(f"{name:20s} threads {a.threads} L {a.L}: QPS {med:.0f} ({qps[0]:.0f}-{qps[-1]:.0f}) "
              f"= {med / base:.2f}x eval, recall@10 {v[0][1]:.4f}")


if __name__ == "__main__":
    main()
