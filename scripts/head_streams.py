#!/usr/bin/env python3
"""Per-stream quality of a per-head importance head on labelled pieces
(docs/head.md "Where the heads lose needles").

For each (layer, kv head) stream: the recall of the stream's own top 2 % and
5 % of reconstruction scores by the head's predictions, and the share of the
stream's score mass in its top 1 % (how peaked the labels are). The head
runs here in numpy, as press/head.c computes it (rmsnorm, positions when the
head has them, standardise, mlp), without its calibration (which keeps each
stream's order).

Usage: scripts/head_streams.py HEAD.safetensors SHARD.safetensors [N_KV_HEAD]
  (SHARD: a tis label --target recon shard at the head's layer; N_KV_HEAD
  default 2, Qwen2.5-Coder-0.5B)"""
import sys

if len(sys.argv) < 3 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)

import os

import numpy as np
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from head_np import Head  # noqa: E402

head_path, shard = sys.argv[1], sys.argv[2]
H = int(sys.argv[3]) if len(sys.argv) > 3 else 2
head = Head(head_path, "head_streams")
S = head.n_streams
L = S // H
g = safe_open(shard, "np")
F = g.get_tensor("features").astype(np.float32)
Y = g.get_tensor("labels_per_head")
off = g.get_tensor("ctx_offsets")
tid, toff, spans = g.get_tensor("token_ids"), g.get_tensor("token_offsets"), g.get_tensor("sample_spans")
rec = np.zeros((S, 2))
peak = np.zeros(S)
for i in range(len(off) - 1):
    a, b = off[i], off[i + 1]
    n = b - a
    ids = tid[toff[i]:toff[i + 1]][spans[i][0]:spans[i][0] + spans[i][1]]
    s = head.scores(F[a:b], ids)  # [S][n]
    y = Y[S * a: S * b].reshape(S, n)
    for q in range(S):
        for c, frac in enumerate((0.02, 0.05)):
            k = max(1, int(np.ceil(frac * n)))
            rec[q, c] += len(set(np.argsort(-y[q])[:k]) & set(np.argsort(-s[q])[:k])) / k
        srt = np.sort(y[q])[::-1]
        peak[q] += srt[: max(1, int(np.ceil(0.01 * n)))].sum() / max(srt.sum(), 1e-9)
rec /= len(off) - 1
peak /= len(off) - 1
print("| layer | recall@2 % (per kv head) | recall@5 % | share of the score in the top 1 % |")
print("| --- | --- | --- | --- |")
for l in range(L):
    r = lambda c: ", ".join(f"{rec[l * H + k, c]:.2f}" for k in range(H))
    print(f"| {l} | {r(0)} | {r(1)} | " + ", ".join(f"{peak[l * H + k]:.2f}" for k in range(H)) + " |")
print(f"| mean of the {S} | {rec[:, 0].mean():.2f} | {rec[:, 1].mean():.2f} | {peak.mean():.2f} |")
