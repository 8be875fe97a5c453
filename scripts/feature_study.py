#!/usr/bin/env python3
"""Label shards with other inputs for the per-head head, to measure what it lacks
(docs/head.md "What the head lacks"): each MODE writes OUT/MODE, a copy of LABELS_DIR whose
`features` rows are the token's hidden state (as labelled) with something appended or swapped in:

  prev  the previous token's features instead (row 0 keeps its own)
  cat   [own, previous token's]                                  (d_model x 2)
  pos   [own, 10 j/n, ln(1 + j)]: the token's position j in the context of n (d_model + 2)
  sim   [own, 10 max cosine similarity of its rmsnormed state to another context token's] (+ 1)
  cent  [own, own rmsnormed minus the context's mean, times the row's rms]   (d_model x 2)
  all   [own, cent's part, sim's, pos's]                          (d_model x 2 + 3)

d_model in the metadata is set to the new width, so `tis train` takes them as they are; such a
head fits no model (its inputs are not a layer's hidden state): the validation figures are the
point. Labels and every other tensor are copied.

Usage: scripts/feature_study.py LABELS_DIR OUT MODE...
then   tis train --target recon --labels OUT/MODE --head mlp --hidden 512 --lr 1e-3 --epochs 60 \
           --patience 6 --output h.safetensors     (and the same on LABELS_DIR, the baseline)
"""
import glob
import os
import shutil
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

MODES = ("prev", "cat", "pos", "sim", "cent", "all")


def rows(mode, X):
    """The new rows of one sample's context, X [n][d] f32."""
    n, d = X.shape
    if mode in ("prev", "cat"):
        prev = np.empty_like(X)
        if n:
            prev[0], prev[1:] = X[0], X[:-1]
        return prev if mode == "prev" else np.concatenate([X, prev], axis=1)
    r = np.sqrt((X ** 2).mean(1, keepdims=True) + 1e-6)
    Xn = X / r
    j = np.arange(n, dtype=np.float32)[:, None]
    pos = np.concatenate([j / max(n, 1) * 10, np.log1p(j)], axis=1)
    U = Xn / np.linalg.norm(Xn, axis=1, keepdims=True)
    S = U @ U.T
    np.fill_diagonal(S, -1)
    sim = (S.max(1) * 10)[:, None] if n > 1 else np.zeros((n, 1), np.float32)
    cent = (Xn - Xn.mean(0, keepdims=True)) * r
    parts = {"pos": [X, pos], "sim": [X, sim], "cent": [X, cent], "all": [X, cent, sim, pos]}[mode]
    return np.concatenate(parts, axis=1)


def main():
    if len(sys.argv) < 4 or any(m not in MODES for m in sys.argv[3:]):
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    shards = sorted(glob.glob(os.path.join(src, "shard-*.safetensors")))
    if not shards:
        sys.exit(f"feature_study: no shard-*.safetensors in {src}")
    for mode in sys.argv[3:]:
        dst = os.path.join(out, mode)
        os.makedirs(dst, exist_ok=True)
        for p in shards:
            d = load_file(p)
            with safe_open(p, "np") as f:
                meta = dict(f.metadata())
            F, co = d["features"].astype(np.float32), d["ctx_offsets"]
            parts = [rows(mode, F[co[i]:co[i + 1]]) for i in range(len(co) - 1)]
            new = np.concatenate(parts, axis=0).astype(np.float16)
            d["features"] = new
            d["query_features"] = np.zeros((0, new.shape[1]), dtype=np.float16)
            meta["d_model"] = str(new.shape[1])
            save_file(d, os.path.join(dst, os.path.basename(p)), metadata=meta)
        for f in ("label_config.json", "manifest.jsonl"):
            if os.path.exists(os.path.join(src, f)):
                shutil.copy(os.path.join(src, f), dst)
        print(f"feature_study: {mode}: {len(shards)} shards -> {dst} (width {new.shape[1]})")


if __name__ == "__main__":
    main()
