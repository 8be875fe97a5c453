#!/usr/bin/env python3
"""How much of a stream's reconstruction score position alone predicts (docs/head.md).

For reconstruction labels (tis label --target recon): per stream, the mean ln(score) by position
bin (the first 8 tokens one by one, then 20 bins of relative position) fitted on 80 % of the
pieces (numpy's permutation, seed 42; not tis train's split), and its recall of each stream's top
10 % on the other 20 %, averaged over streams and by groups of 6 layers.

Usage: scripts/positional_baseline.py LABELS_DIR
"""
import glob
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

BINS, FIRST = 20, 8


def bins(n):
    j = np.arange(n)
    return np.where(j < FIRST, j, FIRST + np.minimum((j / n * BINS).astype(int), BINS - 1))


def recall(pred, y, frac=0.1):
    k = max(1, int(np.ceil(frac * len(y) - 1e-9)))
    return len(set(np.argsort(-y, kind="stable")[:k]) & set(np.argsort(-pred, kind="stable")[:k])) / k


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    shards = sorted(glob.glob(os.path.join(sys.argv[1], "shard-*.safetensors")))
    if not shards:
        sys.exit(f"positional_baseline: no shard-*.safetensors in {sys.argv[1]}")
    with safe_open(shards[0], "np") as f:
        meta = f.metadata()
    if meta.get("target") != "recon":
        sys.exit("positional_baseline: reconstruction labels only (tis label --target recon)")
    n_layer, H = int(meta["n_layer"]), int(meta["label_heads"])
    S = n_layer * H
    pieces = []
    for p in shards:
        d = load_file(p)
        co, ph = d["ctx_offsets"], d["labels_per_head"]
        for i in range(len(co) - 1):
            n = co[i + 1] - co[i]
            pieces.append(ph[co[i] * S:(co[i] + n) * S].reshape(S, n))
    idx = np.random.default_rng(42).permutation(len(pieces))
    nv = max(1, round(0.2 * len(pieces)))
    val, train = [pieces[i] for i in idx[:nv]], [pieces[i] for i in idx[nv:]]
    tab, cnt = np.zeros((S, FIRST + BINS)), np.zeros((S, FIRST + BINS))
    for x in train:
        b, lx = bins(x.shape[1]), np.log(np.maximum(x, 1e-6))
        for s in range(S):
            np.add.at(tab[s], b, lx[s])
            np.add.at(cnt[s], b, 1)
    tab /= np.maximum(cnt, 1)
    jitter = np.random.default_rng(7)
    per_stream = np.zeros(S)
    for x in val:
        n, b = x.shape[1], bins(x.shape[1])
        for s in range(S):  # a tiny jitter breaks the ties inside a bin at random
            per_stream[s] += recall(tab[s][b] + 1e-9 * jitter.random(n), x[s]) / len(val)
    g = 6 * H
    print(json.dumps({"pieces_train": len(train), "pieces_val": len(val), "recall_10": round(per_stream.mean(), 4),
                      "by_layers": {f"{a // H}-{min(a + g, S) // H - 1}": round(per_stream[a:a + g].mean(), 4)
                                    for a in range(0, S, g)}}))


if __name__ == "__main__":
    main()
