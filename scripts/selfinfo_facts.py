#!/usr/bin/env python3
"""selfinfo_facts: where the selfinfo press's budget goes on a benchmark's
samples (docs/results/recon, "Self-information").

For each sample of a JSONL that `tis eval --export` wrote, `tis selfinfo`
scores the context alone (no chat framing, so the first token is a sink) and
this script ranks its tokens as the press would in one stream: by the word's
summed self-information, or by the token's own (--tokens). It prints, per
budget, the share of the items' key-to-value tokens in the top b of the
context, the items whose value is kept whole, whose key and value both are,
and the share of the kept tokens that fall on the items (the rest is
haystack). Items are the agnostic_bound.py patterns (litm_qa: "The capital of
K is V.").

Usage: scripts/selfinfo_facts.py [--tis build/tis] [--tokens] MODEL SAMPLES.jsonl
"""
import argparse
import bisect
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agnostic_bound as ab  # noqa: E402  (item patterns, token offsets)

BUDGETS = (0.02, 0.05, 0.1, 0.25)


def scores(tis, model, text, words):
    """tis selfinfo on text: the word (or token) score of each token."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.write(text)
    try:
        out = subprocess.run([tis, "selfinfo", "-m", model, "-f", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if out.returncode:
        sys.exit(f"selfinfo_facts: tis selfinfo failed: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines or lines[0].split("\t") != ["position", "id", "bytes", "nll", "word"]:
        sys.exit("selfinfo_facts: tis selfinfo wrote no header")
    return [float(line.rsplit("\t", 2)[2 if words else 1]) for line in lines[1:]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tis", default="build/tis")
    ap.add_argument("--tokens", action="store_true", help="rank by each token's own self-information")
    ap.add_argument("model")
    ap.add_argument("samples")
    a = ap.parse_args()
    vocab, dec = ab.vocabulary(a.model), ab.byte_decoder()
    rows = [json.loads(line) for line in open(a.samples, encoding="utf-8") if line.strip()]
    if not rows:
        sys.exit(f"selfinfo_facts: {a.samples}: no samples")
    bench = rows[0]["id"].rsplit("-", 4)[0]
    if bench not in ab.ITEMS:
        sys.exit(f"selfinfo_facts: benchmark '{bench}' has no item pattern (known: {', '.join(ab.ITEMS)})")
    stats = {b: {"kv": [], "v": [], "kvw": [], "on": []} for b in BUDGETS}
    share = []
    for r in rows:
        ctx = r["context"]
        ends = ab.token_ends(a.tis, a.model, vocab, dec, ctx)
        sc = scores(a.tis, a.model, ctx, not a.tokens)
        if len(sc) != len(ends):
            sys.exit(f"selfinfo_facts: {r['id']}: {len(sc)} scores for {len(ends)} tokens")

        def toks(x, y):  # the tokens overlapping characters [x, y)
            return set(range(bisect.bisect_right(ends, x), bisect.bisect_left(ends, y) + 1))

        items = list(re.finditer(ab.ITEMS[bench], ctx))
        if not items:
            sys.exit(f"selfinfo_facts: {r['id']}: no items")
        kv = set().union(*(toks(m.start("k"), m.end("v")) for m in items))
        share.append(len(kv) / len(ends))
        order = sorted(range(len(sc)), key=lambda t: -sc[t])
        for b in BUDGETS:
            k = int(b * len(ends))
            top = set(order[:k])
            s = stats[b]
            s["kv"].append(len(top & kv) / len(kv))
            s["v"].append(sum(toks(m.start("v"), m.end("v")) <= top for m in items) / len(items))
            s["kvw"].append(sum((toks(m.start("k"), m.end("k")) | toks(m.start("v"), m.end("v"))) <= top
                                for m in items) / len(items))
            s["on"].append(len(top & kv) / max(k, 1))
    print(f"{bench}: {len(rows)} samples, key-to-value tokens {100 * statistics.mean(share):.1f} % of the context; "
          f"ranked by {'token' if a.tokens else 'word'} self-information\n")
    print("| budget | key-to-value tokens kept | values kept whole | key and value kept whole | kept tokens on items |")
    print("|---:|---:|---:|---:|---:|")
    for b in BUDGETS:
        s = stats[b]
        print(f"| {b:g} | {statistics.mean(s['kv']):.2f} | {statistics.mean(s['v']):.2f} | "
              f"{statistics.mean(s['kvw']):.2f} | {statistics.mean(s['on']):.2f} |")


if __name__ == "__main__":
    main()
