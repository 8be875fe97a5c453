"""A per-head importance head run in numpy, as press/head.c computes it:
rmsnorm of the hidden states, the two position inputs when the head has
them, standardise, a one-hidden-layer mlp. No calibration (it keeps each
stream's order, so rankings are the same). Used by scripts/head_streams.py
and scripts/needle_ranks.py."""
import sys

import numpy as np
from safetensors import safe_open


class Head:
    """A per-head mlp head read from a tis head file (tis train --target recon)."""

    def __init__(self, path, who="head_np"):
        h = safe_open(path, "np")
        md = h.metadata() or {}
        if md.get("kind") != "mlp" or int(md.get("n_out", "1")) < 2:
            sys.exit(f"{who}: {path}: a per-head mlp head is needed")
        t = lambda name: h.get_tensor("importance_head." + name)
        self.w1, self.b1 = t("fc1.weight"), t("fc1.bias")
        self.w2, self.b2 = t("out_proj.weight"), t("out_proj.bias")
        self.mu, self.sd = t("feature_mean"), t("feature_std")
        self.positions = int(md.get("positions", "0")) != 0
        self.n_streams = self.w2.shape[0]

    def scores(self, x):
        """x: [n][d] hidden states of one context; returns [streams][n]."""
        n = x.shape[0]
        f = x / np.sqrt((x.astype(np.float64) ** 2).mean(1) + 1e-6)[:, None].astype(np.float32)
        if self.positions:
            j = np.arange(n)
            f = np.concatenate([f, (10.0 * j / n)[:, None], np.log1p(j)[:, None]], 1).astype(np.float32)
        hid = np.maximum(((f - self.mu) / self.sd) @ self.w1.T + self.b1, 0)
        return (hid @ self.w2.T + self.b2).T
