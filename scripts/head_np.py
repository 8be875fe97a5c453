"""A per-head importance head run in numpy, as press/head.c computes it:
rmsnorm of the hidden states, the two position inputs and the two
repetition inputs when the head has them, standardise, a one-hidden-layer mlp. No calibration (it keeps each
stream's order, so rankings are the same). Used by scripts/head_streams.py
and scripts/needle_ranks.py."""
import sys

import numpy as np
from safetensors import safe_open


REP_K = 8  # press/head.h HEAD_REP_K


def repeats(ids):
    """[n][2]: whether a REP_K-token window containing token j occurs at an
    earlier / a later start in ids (press/head.c head_repeats)."""
    ids = [int(t) for t in ids]
    n = len(ids)
    out = np.zeros((n, 2), np.float32)
    starts = {}
    for s in range(n - REP_K + 1):
        starts.setdefault(tuple(ids[s:s + REP_K]), []).append(s)
    for ss in starts.values():
        for k, s in enumerate(ss):
            if k > 0:
                out[s:s + REP_K, 0] = 1
            if k < len(ss) - 1:
                out[s:s + REP_K, 1] = 1
    return out


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
        self.repeats = int(md.get("repeats", "0")) != 0
        self.n_streams = self.w2.shape[0]

    def scores(self, x, ids=None):
        """x: [n][d] hidden states of one context, ids[n] its token ids (a head
        with repetition inputs needs them); returns [streams][n]."""
        n = x.shape[0]
        f = x / np.sqrt((x.astype(np.float64) ** 2).mean(1) + 1e-6)[:, None].astype(np.float32)
        if self.positions:
            j = np.arange(n)
            f = np.concatenate([f, (10.0 * j / n)[:, None], np.log1p(j)[:, None]], 1).astype(np.float32)
        if self.repeats:
            if ids is None:
                sys.exit("head_np: this head has repetition inputs: give the context's token ids")
            f = np.concatenate([f, repeats(ids)], 1).astype(np.float32)
        hid = np.maximum(((f - self.mu) / self.sd) @ self.w1.T + self.b1, 0)
        return (hid @ self.w2.T + self.b2).T


def pop_layer(args, default=16):
    """Removes "--layer L" from args (a list) and returns L (default when absent)."""
    if "--layer" not in args:
        return default
    i = args.index("--layer")
    if i + 1 >= len(args) or not args[i + 1].isdigit():
        sys.exit("--layer takes a layer number")
    layer = int(args[i + 1])
    del args[i:i + 2]
    return layer


def recon_samples(shard, who):
    """Yields (kv_heads, context token ids, features [n][d], labels [streams][n])
    for each sample of a `tis label --target recon` shard."""
    g = safe_open(shard, "np")
    if (g.metadata() or {}).get("target") != "recon":
        sys.exit(f"{who}: {shard}: not reconstruction labels (tis label --target recon)")
    kvh = int(g.metadata()["label_heads"])
    feats = g.get_tensor("features").astype(np.float32)
    labels = g.get_tensor("labels_per_head")
    off, spans = g.get_tensor("ctx_offsets"), g.get_tensor("sample_spans")
    tid, toff = g.get_tensor("token_ids"), g.get_tensor("token_offsets")
    n_streams = labels.size // int(off[-1])
    for i in range(len(off) - 1):
        a, b = int(off[i]), int(off[i + 1])
        ctx = tid[toff[i]:toff[i + 1]][spans[i][0]:spans[i][0] + spans[i][1]]
        yield kvh, ctx, feats[a:b], labels[n_streams * a:n_streams * b].reshape(n_streams, b - a)


def pooled_keep(scores, frac):
    """The top frac of every stream's tokens, chosen together (as tis and kvzip pool)."""
    k = max(1, int(frac * scores.size))
    return scores >= np.sort(scores.ravel())[-k]
