#!/usr/bin/env python3
"""Label shards whose features are the previous token's (or both tokens'), for a study of what
the per-head head lacks (docs/head.md "One trunk or one per layer"): does a token's
reconstruction score depend on the token before it (an induction head, reproducing the context,
attends to the token after the one it matches)?

Writes OUT/prev (row j: the features of row j - 1; row 0 its own) and OUT/cat (rows [f_j, f_(j-1)],
d_model doubled in the metadata, so `tis train` takes them as they are; such a head fits no
model: it is for the validation figures only). Labels and everything else are copied.

Usage: scripts/prevtoken_features.py LABELS_DIR OUT
then   tis train --target recon --labels OUT/cat --head mlp --hidden 512 --lr 1e-3 --epochs 60 \
           --patience 6 --output h.safetensors       (and the same on LABELS_DIR and OUT/prev)
"""
import glob
import os
import shutil
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    shards = sorted(glob.glob(os.path.join(src, "shard-*.safetensors")))
    if not shards:
        sys.exit(f"prevtoken_features: no shard-*.safetensors in {src}")
    for mode in ("prev", "cat"):
        dst = os.path.join(out, mode)
        os.makedirs(dst, exist_ok=True)
        for p in shards:
            d = load_file(p)
            with safe_open(p, "np") as f:
                meta = dict(f.metadata())
            F, co = d["features"], d["ctx_offsets"]
            prev = np.empty_like(F)
            for i in range(len(co) - 1):
                a, b = co[i], co[i + 1]
                if b > a:
                    prev[a] = F[a]
                    prev[a + 1:b] = F[a:b - 1]
            if mode == "prev":
                d["features"] = prev
            else:
                d["features"] = np.concatenate([F, prev], axis=1)
                d["query_features"] = np.zeros((0, 2 * F.shape[1]), dtype=F.dtype)
                meta["d_model"] = str(2 * F.shape[1])
            save_file(d, os.path.join(dst, os.path.basename(p)), metadata=meta)
        for f in ("label_config.json", "manifest.jsonl"):
            if os.path.exists(os.path.join(src, f)):
                shutil.copy(os.path.join(src, f), dst)
        print(f"prevtoken_features: {len(shards)} shards -> {dst}")


if __name__ == "__main__":
    main()
