"""Build the 10K index from ../shared/data, search it, print recall@10.

    pip install ./python && python examples/quickstart.py [DATA_DIR]
"""
import pathlib
import sys
import tempfile

import numpy as np

import ssdann

data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[1].parent / "shared/data/pypi-minilm-100k")

queries = ssdann.read_vectors(data / "query.fbin")[:1000]
gt, _ = ssdann.read_ground_truth(data / "gt10k.ibin")
with tempfile.TemporaryDirectory() as tmp:
    report = ssdann.build(str(data / "base10k.fbin"), f"{tmp}/idx", R=64, L=100, pq_bytes=48)
    index = ssdann.Index(f"{tmp}/idx")
    ids, dists, stats = index.batch_search(queries, 10, L=100, W=4, return_stats=True)
    recall = np.mean([len(set(ids[i].tolist()) & set(gt[i, :10].tolist())) / 10 for i in range(len(ids))])
    print(f"{index!r}: recall@10 = {recall:.4f} at L=100, W=4; {stats['sector_reads'].mean():.1f} sector reads/query")
