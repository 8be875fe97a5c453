#!/usr/bin/env python3
"""Developer check (not run by CI): tis's NFC normalisation against HF
tokenizers on Qwen2.5's real vocabulary.

Builds Qwen2.5's tokenizer.json (NFC normalizer, Qwen2's Split regex,
ByteLevel, BPE; control and user-defined tokens as added tokens with
normalized=false, as in the original file) from the GGUF's metadata into a
temporary directory, then encodes texts in precomposed and decomposed (NFD)
forms and random strings of combining marks, Hangul jamo and letters with
HF `tokenizers` (Tokenizer.encode(text, add_special_tokens=False)) and with
`tis tokenize --ids -m DIR`, and counts the differences.

Usage: python3 scripts/nfc_hf_check.py [--tis build/tis] [--model GGUF] [-n 60]
Needs: pip install tokenizers (scripts/requirements-golden.txt); the model
from scripts/fetch_model.sh qwen2.5-coder-0.5b. Exit 1 on any difference.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import fuzz_seeds  # noqa: E402  (its GGUF metadata reader)

QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

BASE = ["caf\u00e9 na\u00efve \u00c5ngstr\u00f6m fa\u00e7ade", "\ud55c\uad6d\uc5b4 \ud14c\uc2a4\ud2b8\uc785\ub2c8\ub2e4.",
        "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u", "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac: \u1f00\u03c1\u03c7\u1f74 \u1f85\u03b4\u03b7\u03c2 \u1ff7",
        "\u2126 \u212b \u212a \u2260 \u226f", "\u0958 \u0959 \u095a \u095b", "\ufb00 \ufb01 \uff21\uff22 \u2460",
        "<|im_start|>user\ncaf\u00e9<|im_end|>\n<|im_start|>assistant\n", "e<|im_end|>\u0301",
        "<tool_call>\u0338 x", "Z\u00fcrich, D\u00fcsseldorf, K\u00f6ln, \u00d6sterreich",
        "\u1ea1\u0300 \u1ed9 \u01d8 \u1e69 \u1eab \u022b", "\u1100\u1161\u11a8\u1100\u1161",
        "def f():\n    return '\u00e9'  # \u00fc\n"]


def qwen_tokenizer_json(gguf_path):
    _, kvs = fuzz_seeds.gguf_kvs(gguf_path)
    toks = [t.decode("utf-8") for t in fuzz_seeds.kv_get(kvs, "tokenizer.ggml.tokens")[1]]
    types = fuzz_seeds.kv_get(kvs, "tokenizer.ggml.token_type")[1]
    merges = [m.decode("utf-8").split(" ") for m in fuzz_seeds.kv_get(kvs, "tokenizer.ggml.merges")[1]]
    added = [{"id": i, "content": toks[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": t == 3} for i, t in enumerate(types) if t in (3, 4)]
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
                 "invert": False}, dict(bl)]},
            "post_processor": dict(bl), "decoder": dict(bl),
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": None, "end_of_word_suffix": None,
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {t: i for i, t in enumerate(toks)}, "merges": merges}}


def texts(n_random):
    out = []
    for b in BASE:
        out += [b, unicodedata.normalize("NFD", b)]
    rng = random.Random(3)
    pool = ([chr(c) for c in range(0x300, 0x370)] + list("aeiouAEIOU  \n") +
            [chr(c) for c in range(0x1100, 0x1176)] + list("\u00e9\u00fc\u00c5\ud55c\u0958"))
    out += ["".join(rng.choice(pool) for _ in range(rng.randint(1, 20))) for _ in range(n_random)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tis", default=os.path.join(ROOT, "build", "tis"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"))
    ap.add_argument("-n", type=int, default=60, help="random strings besides the fixed texts")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(qwen_tokenizer_json(args.model), f, ensure_ascii=False)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        bad = 0
        all_texts = texts(args.n)
        for t in all_texts:
            want = hf.encode(t, add_special_tokens=False).ids
            r = subprocess.run([args.tis, "tokenize", "--ids", "-m", d, "--", t],
                               capture_output=True, text=True, check=True)
            got = [int(x) for x in r.stdout.split()]
            if got != want:
                bad += 1
                print("differs: %r\n  tis %s\n  hf  %s" % (t, got, want))
    print("nfc_hf_check: %d texts, %d differences (HF tokenizers, Qwen2.5 vocabulary, unicodedata %s)"
          % (len(all_texts), bad, unicodedata.unidata_version))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
