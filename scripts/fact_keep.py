#!/usr/bin/env python3
"""Where a pooled budget goes on litm_qa: the share of the documents' fact
tokens ("The capital of X is Y."), of their key-to-value spans ("X is Y"),
of the titles and of the other (licence) text that a pooled selection
keeps, over every stream and in one layer, for kvzip's scores (the labels)
and for a per-head head run in numpy (scripts/head_np.py)
(docs/results/recon/README.md "What a query-agnostic selection can keep").

Input: a `tis label --target recon` shard of litm_qa (a diagnosis of
benchmark samples, never training data), e.g.

  build/tis label -m models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf --benchmark litm_qa \\
    --context_tokens 4096 --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 --seed 42 \\
    --n_samples 2 --target recon --layer 12 --output /tmp/litm_qa-l12

Usage: scripts/fact_keep.py MODEL.gguf SHARD.safetensors HEAD.safetensors [--layer L]  (L default 16)"""
import codecs
import os
import re
import sys

if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agnostic_bound import byte_decoder, vocabulary  # noqa: E402
from head_np import Head, pooled_keep, pop_layer, recon_samples  # noqa: E402


def main():
    args = sys.argv[1:]
    layer = pop_layer(args)
    model, shard, head_path = args[:3]
    voc, dec = vocabulary(model), byte_decoder()
    head = Head(head_path, "fact_keep")
    for i, (kvh, ctx, feats, labels) in enumerate(recon_samples(shard, "fact_keep")):
        n = len(ctx)
        text, starts = "", []
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        for t in ctx:
            starts.append(len(text))
            text += utf8.decode(bytes(dec[c] for c in voc[int(t)]))
        starts = np.array(starts)
        fact, kv, title = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        for m in re.finditer(r"The capital of (\w+) is (\w+)\.", text):
            fact |= (starts >= m.start()) & (starts < m.end())
            kv |= (starts >= m.start(1)) & (starts < m.end(2))
        for m in re.finditer(r"\(Title: \w+\)", text):
            title |= (starts >= m.start()) & (starts < m.end())
        if not fact.any():
            print(f"sample {i}: no 'The capital of X is Y.' fact (not litm_qa?)")
            continue
        other = ~(fact | title)
        y = np.log(np.maximum(labels, 1e-6))
        print(f"sample {i}: {n} tokens; facts {fact.sum()}, key-to-value {kv.sum()}, titles {title.sum()}, "
              f"other {other.sum()}; kept share over every stream | in layer {layer}")
        for name, sc in (("kvzip", y), ("head", head.scores(feats, ctx))):
            for f in (0.05, 0.1, 0.25):
                k = pooled_keep(sc, f)
                ly = k[layer * kvh:(layer + 1) * kvh]
                print(f"  {name:5s} {f:4.2f}: facts {k[:, fact].mean():.3f} key-to-value {k[:, kv].mean():.3f} "
                      f"titles {k[:, title].mean():.3f} other {k[:, other].mean():.3f} | facts "
                      f"{ly[:, fact].mean():.3f} other {ly[:, other].mean():.3f}, all {ly.mean():.3f}")


if __name__ == "__main__":
    main()
