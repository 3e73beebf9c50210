"""Pictures of an eval run: the recall@k–QPS curve and the latency histogram.

Needs matplotlib (``pip install './python[plot]'``); nothing else in ssdann imports it.
The input is what ``ssdann eval --json FILE`` writes.
"""
import json
import os
from typing import Iterable, Optional, Sequence, Union

PathLike = Union[str, "os.PathLike[str]"]


def _load(path: PathLike) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or "rows" not in doc:
        raise ValueError(f"{os.fspath(path)}: not an `ssdann eval --json` file (no \"rows\")")
    return doc


def plot_eval(
    evals: Union[PathLike, Sequence[PathLike]],
    out: Optional[PathLike] = None,
    *,
    L: Optional[int] = None,
    title: Optional[str] = None,
):
    """Draw eval results: recall@k against QPS, and the latency histogram of one L.

    Parameters
    ----------
    evals : path or sequence of paths
        Files written by ``ssdann eval --json``. Each file's rows are grouped by thread count
        (and the file's cache size) into one line of the recall–QPS plot, labelled
        "FILE, N thread(s), cache C".
    out : path, optional
        Write the figure there (PNG, or any format matplotlib knows by extension).
    L : int, optional
        The search list size whose latency histogram is drawn (default: the largest L at
        one thread of the first file); p50 and p99 are marked.
    title : str, optional
        Figure title (default: the index path of the first file).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: recall@k vs QPS (log scale), and latency (µs, log scale) histogram.

    Raises
    ------
    ImportError
        matplotlib is not installed (``pip install './python[plot]'``).
    ValueError
        A file that is not eval JSON, or an L no row of the first file has.

    Examples
    --------
    >>> fig = ssdann.plot_eval(["eval_c0.json", "eval_c1000.json"], "recall_qps.png")  # doctest: +SKIP
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("ssdann.plot_eval needs matplotlib: pip install './python[plot]'") from e
    paths = [evals] if isinstance(evals, (str, os.PathLike)) else list(evals)
    if not paths:
        raise ValueError("evals: no eval JSON files given")
    docs = [(p, _load(p)) for p in paths]
    fig, (ax_curve, ax_hist) = plt.subplots(1, 2, figsize=(12, 4.8))
    for path, doc in docs:
        cache = doc.get("params", {}).get("cache_nodes", 0)
        threads = sorted({r["threads"] for r in doc["rows"]})
        for t in threads:
            rows = sorted((r for r in doc["rows"] if r["threads"] == t), key=lambda r: r["L"])
            label = f"{os.path.basename(os.fspath(path))}, {t} thread{'s' if t > 1 else ''}, cache {cache}"
            ax_curve.plot([r["recall"] for r in rows], [r["qps"] for r in rows], marker="o", label=label)
            for r in rows:
                ax_curve.annotate(f"L={r['L']}", (r["recall"], r["qps"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    k = docs[0][1].get("params", {}).get("k", 10)
    ax_curve.set_xlabel(f"recall@{k}")
    ax_curve.set_ylabel("queries per second")
    ax_curve.set_yscale("log")
    ax_curve.grid(True, which="both", alpha=0.3)
    ax_curve.legend(fontsize=8)
    ax_curve.set_title("recall–QPS (up and right is better)")

    first = docs[0][1]["rows"]
    one = [r for r in first if r["threads"] == min(r2["threads"] for r2 in first)]
    if L is None:
        row = max(one, key=lambda r: r["L"])
    else:
        match = [r for r in one if r["L"] == L]
        if not match:
            raise ValueError(f"L = {L}: {os.fspath(paths[0])} has rows at L = {sorted({r['L'] for r in one})}")
        row = match[0]
    hist = row.get("latency_hist")
    if not hist or not hist.get("counts"):
        raise ValueError(f"{os.fspath(paths[0])}: rows carry no latency_hist (written by an older ssdann eval)")
    edges, counts = hist["edges_us"], hist["counts"]
    widths = [b - a for a, b in zip(edges, edges[1:])]
    ax_hist.bar(edges[:-1], counts, width=widths, align="edge", edgecolor="black", linewidth=0.3)
    ax_hist.set_xscale("log")
    for name, key, style in (("p50", "p50_us", "--"), ("p99", "p99_us", ":")):
        ax_hist.axvline(row[key], color="red", linestyle=style, label=f"{name} = {row[key]:.0f} µs")
    ax_hist.set_xlabel("latency per query (µs)")
    ax_hist.set_ylabel("queries")
    ax_hist.legend(fontsize=8)
    ax_hist.set_title(f"latency at L = {row['L']}, {row['threads']} thread(s), recall@{k} {row['recall']:.3f}")
    fig.suptitle(title or f"ssdann eval: {docs[0][1].get('params', {}).get('index', '')}")
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=110)
    return fig


def main(argv: Iterable[str]) -> int:
    """``ssdann plot FILE... --out PNG [-L N]`` (the console script's plot subcommand)."""
    import argparse

    ap = argparse.ArgumentParser(prog="ssdann plot", description=plot_eval.__doc__.split("\n")[0])
    ap.add_argument("json", nargs="+", help="eval --json files")
    ap.add_argument("--out", required=True, help="output PNG")
    ap.add_argument("-L", type=int, default=None, help="L of the latency histogram")
    a = ap.parse_args(list(argv))
    try:
        plot_eval(a.json, a.out, L=a.L)
    except (ImportError, ValueError, OSError) as e:
        print(f"error: {e}", flush=True)
        return 2
    print(f"wrote {a.out}")
    return 0
