#!/usr/bin/env python3
"""How much a query-agnostic token selection can answer at all, per benchmark
(docs/results/recon/README.md "What limits it").

Before the question, a policy cannot know which item (needle, JSON pair,
document fact) will be asked, so to answer a fraction f of the questions it
must keep the answer's own tokens (the value the model has to copy) for a
fraction f of the items. With a budget of b of the context per stream (a
uniform budget; pooled budgets move tokens between streams, not within
one), at most the items whose values fit in b * context tokens can be kept
whole: the bound printed is that share of the items (smallest values
first), an upper bound on retention for any policy that keeps tokens
unchanged (keeping only the values, nothing around them; the model may
still find a value whose key is gone, or read a value from later entries
that attended to it, so it is an estimate, not a proof). The key-to-value
column counts the tokens from the item's key to its value (what binds the
value to the question) for comparison; it is not used in the bound.

Input: samples exported by `tis eval --export` (the exact samples of a
held-out cell: same options and seed), e.g.

  build/tis eval -m models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf --benchmark litm_kv \\
    --context_tokens 4096 --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 \\
    --n_samples 20 --seed 42 --export /tmp/litm_kv.jsonl

Usage: scripts/agnostic_bound.py [--tis build/tis] MODEL.gguf SAMPLES.jsonl...
Contexts are tokenized by `tis tokenize` (one call per sample) and mapped
back to characters through the model's vocabulary (byte-level BPE)."""
import argparse
import bisect
import codecs
import json
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fuzz_seeds import gguf_kvs  # noqa: E402  (the GGUF key/value reader)

BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.25)

# One answerable item per match; group v is the value the answer copies,
# group k what binds it to the question (from k to v: the item's binding span).
ITEMS = {
    "passkey": r"The (?P<k>secret code|pass key) is (?P<v>\d+)",
    "niah": r"The hidden number associated with (?P<k>\S+) is (?P<v>\d+)",
    "niah_multikey": r"The hidden number associated with (?P<k>\S+) is (?P<v>\d+)",
    "litm_kv": r'"(?P<k>[0-9a-f]{8})": "(?P<v>[0-9a-f]{8})"',
    "litm_qa": r"The capital of (?P<k>\w+) is (?P<v>\w+)\.",
}


def byte_decoder():
    """GPT-2's byte-level alphabet, reversed: vocabulary character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def vocabulary(path):
    """The token strings of a GGUF's byte-level BPE vocabulary (needle_ranks.py
    and fact_keep.py use it too)."""
    kvs = dict((k, v) for k, _t, v in gguf_kvs(path)[1])
    model = kvs.get("tokenizer.ggml.model")
    model = model.decode() if isinstance(model, bytes) else model
    if model != "gpt2":
        sys.exit(f"{path}: tokenizer '{model}': these scripts read byte-level BPE (gpt2) vocabularies only")
    return [s.decode("utf-8", "replace") for s in kvs["tokenizer.ggml.tokens"][1]]


def token_ends(tis, model, vocab, dec, want):
    """The character offset where each token of text ends."""
    out = subprocess.run([tis, "tokenize", "-m", model, "--ids", want], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"agnostic_bound: tis tokenize failed: {out.stderr.strip()}")
    text, ends = "", []
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    for t in out.stdout.split():
        text += utf8.decode(bytes(dec[c] for c in vocab[int(t)]))
        ends.append(len(text))
    if text + utf8.decode(b"", final=True) != want:
        sys.exit("agnostic_bound: the tokens do not spell the context back (another tokenizer?)")
    return ends


def tokens_in(ends, a, b):
    """How many tokens overlap characters [a, b) (ends: increasing token ends)."""
    return bisect.bisect_left(ends, b) - bisect.bisect_right(ends, a) + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tis", default="build/tis")
    ap.add_argument("model")
    ap.add_argument("samples", nargs="+")
    a = ap.parse_args()
    vocab, dec = vocabulary(a.model), byte_decoder()
    print("| benchmark | samples | context tokens | items | value tokens / item | key-to-value tokens / item "
          "| item share whose value fits at " + " / ".join(f"{b:g}" for b in BUDGETS) + " |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for path in a.samples:
        rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
        if not rows:
            sys.exit(f"agnostic_bound: {path}: no samples")
        bench = rows[0]["id"].rsplit("-", 4)[0]
        if bench not in ITEMS:
            sys.exit(f"agnostic_bound: {path}: benchmark '{bench}' has no item pattern (known: {', '.join(ITEMS)})")
        n_ctx, n_items, v_tok, kv_tok, share = [], [], [], [], {b: [] for b in BUDGETS}
        for r in rows:
            ctx = r["context"]
            ends = token_ends(a.tis, a.model, vocab, dec, ctx)
            items = list(re.finditer(ITEMS[bench], ctx))
            if not items or not any(m.group("v") in r.get("answers", []) for m in items):
                sys.exit(f"agnostic_bound: {r['id']}: the asked item is not among the {len(items)} found")
            vt = sorted(tokens_in(ends, m.start("v"), m.end("v")) for m in items)
            n_ctx.append(len(ends))
            n_items.append(len(items))
            v_tok.extend(vt)
            kv_tok.extend(tokens_in(ends, m.start("k"), m.end("v")) for m in items)
            for b in BUDGETS:
                room, kept = b * len(ends), 0
                for t in vt:
                    if t > room:
                        break
                    room -= t
                    kept += 1
                share[b].append(kept / len(items))
        print(f"| {bench} | {len(rows)} | {statistics.mean(n_ctx):.0f} | {statistics.mean(n_items):.1f} | "
              f"{statistics.mean(v_tok):.1f} | {statistics.mean(kv_tok):.1f} | "
              + " / ".join(f"{statistics.mean(share[b]):.2f}" for b in BUDGETS) + " |")


if __name__ == "__main__":
    main()
