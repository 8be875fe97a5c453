#!/usr/bin/env python3
"""Where a needle's number lands, per stream, under kvzip's scores and under
per-head heads (docs/head.md "Where the heads lose needles").

Input: a `tis label --target recon` shard of a needle benchmark (niah or
passkey; a diagnosis of benchmark samples, never training data), e.g.

  build/tis label -m QWEN --benchmark niah --context_tokens 4096 \\
    --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 --seed 42 \\
    --n_samples 4 --target recon --layer 12 --output /tmp/niah-l12

Per sample: the number's tokens (the first run of 5 or more digits in the
context, found through the model's vocabulary), the share of them that a
pooled selection of 1 % and 2 % keeps over all streams and in layer
LAYER (both kv heads), and their ranks in LAYER's kv head 0, for the
labels (kvzip's scores) and for each head (run here in numpy as
press/head.c does, without calibration).

Usage: scripts/needle_ranks.py MODEL.gguf SHARD.safetensors HEAD.safetensors... [--layer L]
  (L default 16; streams are layer * n_kv_head + kv head, n_kv_head from the shard)"""
import os
import re
import sys

if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agnostic_bound import vocabulary  # noqa: E402
from head_np import Head, pooled_keep, pop_layer, recon_samples  # noqa: E402


def main():
    args = sys.argv[1:]
    layer = pop_layer(args)
    model, shard, heads = args[0], args[1], args[2:]
    voc = vocabulary(model)
    loaded = [(os.path.basename(p).replace(".safetensors", ""), Head(p, "needle_ranks")) for p in heads]
    for i, (kvh, ctx, feats, labels) in enumerate(recon_samples(shard, "needle_ranks")):
        n = len(ctx)
        text, starts = "", []
        for t in ctx:
            starts.append(len(text))
            text += voc[t]
        m = re.search(r"\d{5,}", text)
        if not m:
            print(f"sample {i}: no number of 5 or more digits in the context")
            continue
        num = [j for j in range(n) if m.start() <= starts[j] < m.end()]
        runs = [("kvzip", np.log(np.maximum(labels, 1e-6)))]
        runs += [(name, h.scores(feats, ctx)) for name, h in loaded]
        print(f"sample {i} ({n} tokens): number {m.group(0)} at tokens {num[0]}..{num[-1]}")
        ls = slice(layer * kvh, (layer + 1) * kvh)
        for name, sc in runs:
            kept = [pooled_keep(sc, f) for f in (0.01, 0.02)]
            ranks = sorted(((-sc[layer * kvh]).argsort().argsort()[num]).tolist())
            print(f"  {name:40s} kept at 1 % / 2 %: all streams {kept[0][:, num].mean():.2f} / "
                  f"{kept[1][:, num].mean():.2f}, layer {layer} {kept[0][ls][:, num].mean():.2f} / "
                  f"{kept[1][ls][:, num].mean():.2f}; ranks in layer {layer} kv head 0: {ranks}")


if __name__ == "__main__":
    main()
