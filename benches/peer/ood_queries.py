#!/usr/bin/env python3
"""Out-of-distribution query sets for an f32 data set (issue 13: "checked on out-of-distribution
queries"): (a) 1,000 random unit Gaussian directions, (b) the first 1,000 queries negated.
Exact top-100 by squared L2 (float64 re-rank of a float32 top-400), in the .fbin / .ibin
formats of ../shared/data/README.md.

    benches/peer/ood_queries.py DATA_DIR OUT_DIR   # writes gauss.fbin, gauss.gt.ibin, neg.*
then: ssdann eval --index IDX --queries OUT_DIR/gauss.fbin --gt OUT_DIR/gauss.gt.ibin ...
Needs numpy (benches/peer/.venv-report has it). Memory: the base set + one 1000 × n f32 matrix.
"""
import os
import sys

import numpy as np

D = os.path.join(sys.argv[1], '')
OUT = sys.argv[2]
os.makedirs(OUT, exist_ok=True)
def rbin(p, dt):
    a=np.fromfile(p, dtype=np.uint32, count=2); n,d=int(a[0]),int(a[1])
    return np.fromfile(p, dtype=dt, offset=8, count=n*d).reshape(n,d)
base=rbin(D+'base.fbin', np.float32)
q=rbin(D+'query.fbin', np.float32)[:1000]
rng=np.random.default_rng(20261201)
g=rng.standard_normal((1000,base.shape[1])).astype(np.float32); g/=np.linalg.norm(g,axis=1,keepdims=True)
bn=(base.astype(np.float64)**2).sum(1)
for name,Q in [('gauss',g),('neg',-q)]:
    d32=(base**2).sum(1)[None,:]-2*Q@base.T
    cand=np.argpartition(d32,400,axis=1)[:,:400]
    ids=np.zeros((len(Q),100),np.uint32); dist=np.zeros((len(Q),100),np.float32)
    for i in range(len(Q)):
        c=cand[i]; dd=((base[c].astype(np.float64)-Q[i].astype(np.float64))**2).sum(1)
        o=np.lexsort((c,dd))[:100]; ids[i]=c[o]; dist[i]=dd[o]
    with open(os.path.join(OUT, f'{name}.fbin'),'wb') as f:
        np.array(Q.shape,np.uint32).tofile(f); Q.astype(np.float32).tofile(f)
    with open(os.path.join(OUT, f'{name}.gt.ibin'),'wb') as f:
        np.array([len(Q),100],np.uint32).tofile(f); ids.tofile(f); dist.tofile(f)
    print(name, 'written; mean squared distance of the 10th neighbour', dist[:, 9].mean())
