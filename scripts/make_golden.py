#!/usr/bin/env python3
"""make_golden: reference fixtures for tis from independent implementations.

Writes three small JSON fixtures for one of the supported models (--model-name):
  smollm2-135m        (default) SmolLM2-135M-Instruct Q4_1 GGUF (sha256
                      b179c952...db53), into tests/golden/;
  qwen2.5-coder-0.5b  Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (sha256
                      1d961463...ff32), into tests/golden/qwen2.5-coder-0.5b/.
The files:

  tokenizer.json  token ids for ~20 tricky strings, from a HuggingFace
                  `tokenizers.Tokenizer` rebuilt faithfully from the GGUF
                  metadata (see build_faithful_tokenizer); transformers' own
                  GGUF tokenizer conversion is compared and the differences
                  are recorded in the fixture.
  logits.json     for three prompts: the ids fed, top-20 (id, logit) at the
                  last position, full-vocab statistics (max, argmax,
                  logsumexp, mean, std, min) and the logits of a fixed sparse
                  set of ids; plus top-20 at an intermediate position.
  greedy.json     32-token greedy (argmax) continuation of the ChatML prompt
                  "What is the capital of France?", with the top1-top2 logit
                  margin at each step (plus two extra 32-token runs on the
                  logits.json 'chatml' and 'plain' prompts).

Logits come from transformers loading the GGUF (weights dequantised to f32,
computed in f32 on CPU). The script verifies that every dequantised weight
equals gguf-py's `gguf.quants.dequantize` (after undoing llama.cpp's Q/K
row permutation for attn_q/attn_k of llama-architecture files), and
cross-checks the transformers logits against a small numpy forward pass that
uses the GGUF tensors *as stored* -- the layout the C engine uses: for llama,
permuted Q/K with llama.cpp-style adjacent-pair RoPE; for qwen2, unpermuted
Q/K with half-rotation (NeoX) RoPE, Q/K/V biases and an untied output.weight.

Environment (CPU only, no model hub access needed; versions used are pinned
in scripts/requirements-golden.txt; accelerate is required by
transformers' GGUF loader, jinja2 renders the GGUF chat template):

    python3.11 -m venv /tmp/gold
    /tmp/gold/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.15.0
    /tmp/gold/bin/pip install -r scripts/requirements-golden.txt

Run (from the repo root; takes ~1-2 minutes on 2 cores):

    /tmp/gold/bin/python scripts/make_golden.py [--model-name NAME] [MODEL.gguf] [--out DIR]

MODEL.gguf defaults to the named model's file under models/ (SmolLM2's:
models/SmolLM2-135M-Instruct.Q4_1.gguf; scripts/fetch_model.sh NAME fetches
either). The script refuses a file whose sha256 differs from the expected
one unless --any-model is given. Output is deterministic. The Qwen run takes
several minutes on 2 cores and ~8 GB of memory (the float64 numpy forward).
"""
import argparse
import hashlib
import json
import logging
import math
import os
import sys
import warnings

import numpy as np

EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

TOKENIZER_CASES = [
    ("english", "The quick brown fox jumps over the lazy dog. It wasn't me!"),
    ("code_python",
     "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n"
     "print([fib(i) for i in range(10)])  # 0, 1, 1, 2, ...\n"),
    ("spaces_runs", "a  b   c    d     e\t\tf \t g"),
    ("newlines", "line1\nline2\n\n\nline3\r\n\n \n  end"),
    ("trailing_spaces", "trailing spaces   "),
    ("only_whitespace", "   \n\n\n\t "),
    ("numbers", "12345 3.14159 1,000,000 -42 0x1F 2024-03-15 15/03/2024 v1.2.3 $99.99"),
    ("unicode_numerics", "x\u00b2 + y\u00b3, \u00bd, \u0661\u0662\u0663, \uff11\uff12\uff13, \u216b, \u2460"),
    ("korean", "\uc548\ub155\ud558\uc138\uc694, \uc138\uacc4!"),
    ("emoji",
     "I \u2764\ufe0f \U0001f355! \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 "
     "\U0001f44d\U0001f3fd \U0001f44b\U0001f3ff \U0001f1eb\U0001f1f7"),
    ("mixed_scripts",
     "Hello \u4e16\u754c, \u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440, "
     "\u3053\u3093\u306b\u3061\u306f, \u0645\u0631\u062d\u0628\u0627, caf\u00e9 na\u00efve \u00fcber \u03b1\u03b2\u03b3"),
    ("contractions", "don't, I'll, we've, she'd, they're, it's, I'm, DON'T, We'VE"),
    ("chatml",
     "<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n"
     "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n"),
    ("special_inline", "a<|endoftext|>b <|im_end|> c<|im_start|>"),
    ("punctuation", "Wait... what?!? (yes) [no] {maybe} \"quoted\" 'single' -- em\u2014dash \u2026"),
    ("url_path", "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2 /usr/local/bin"),
    ("leading_space", " leading space and  double"),
    ("empty", ""),
]

PROMPT_PLAIN = "The capital of France is"
PROMPT_CHAT = ("<|im_start|>system\n" + DEFAULT_SYSTEM + "<|im_end|>\n"
               "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n")
PROMPT_PARAGRAPH = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined movable metal type, oil-based ink and a wooden screw press into a "
    "practical system for producing books. Before his invention, most books in Europe were "
    "copied by hand, a slow and expensive process that limited literacy to a small elite. "
    "Within a few decades, printing shops had spread to more than two hundred cities, and "
    "millions of volumes were in circulation. The consequences were profound: scientific "
    "ideas travelled faster, religious debates reached ordinary people, and")
GREEDY_USER = "What is the capital of France?"
GREEDY_STEPS = 32
TOPK = 20
EOS_ID = 2
# fixed sparse set of ids whose logits are recorded (a cheap whole-vocab check)
SPARSE_IDS = list(range(0, 49152, 1531))


def chatml(system, user):
    return ("<|im_start|>system\n" + system + "<|im_end|>\n<|im_start|>user\n" + user
            + "<|im_end|>\n<|im_start|>assistant\n")


# Qwen2.5-Coder: the SmolLM2 strings (with Qwen's system message in the
# ChatML case) plus code and the tokens a coder model's prompts carry.
QWEN_TOKENIZER_CASES = [c if c[0] != "chatml" else ("chatml", chatml(QWEN_SYSTEM, "Hi there!"))
                        for c in TOKENIZER_CASES] + [
    ("code_c",
     "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n"
     "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\treturn 0;\n}\n"),
    ("code_json", '{"key_0017": "a3f9-77c1", "list": [1, 22, 333], "nested": {"ok": true, "v": null}}'),
    ("code_shell_diff",
     "$ git diff --stat\n--- a/src/x.py\n+++ b/src/x.py\n@@ -1,3 +1,4 @@\n-x=1\n+x = 2  # fix\n"
     "    if __name__ == '__main__':\n        main()\n"),
    ("code_indent_mixed", "class A:\n    def f(self):\n\t\treturn {'a': [1,2,3]}\n\n\n        pass\n"),
    ("code_cjk_comment", "x = 1  # \u8ba1\u6570\u5668\uff1a\u6bcf\u6b21\u52a0\u4e00\ny += x**2"),
    ("fim_tokens", "<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n<|fim_middle|>return a + b"),
    ("tool_call_tokens", "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"),
    ("repo_file_tokens", "<|repo_name|>tis<|file_sep|>engine/forward.c\nint x;"),
    ("long_number_hex", "0xDEADBEEF 1234567890123 3.14e-10 1_000_000"),
    ("nfc_composed", "caf\u00e9 \u00c5ngstr\u00f6m na\u00efve"),
]
QWEN_PROMPT_CHAT = chatml(QWEN_SYSTEM, "Write a Python function that reverses a string.")

# Per-model settings. SmolLM2's values are the module constants above, so
# its fixtures are what this script wrote before it knew a second model
# (rerun with the torch 2.15.0 wheel from PyPI: tokenizer.json identical,
# logits equal to ~1e-5, the f32 noise of another torch build).
PROFILES = {
    "smollm2-135m": {
        "sha256": EXPECTED_SHA256, "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "out": "tests/golden",
        "system": DEFAULT_SYSTEM, "cases": TOKENIZER_CASES, "pre": "smollm2",
        "prompt_chat": PROMPT_CHAT, "eos_ids": [EOS_ID], "sparse_ids": SPARSE_IDS,
    },
    "qwen2.5-coder-0.5b": {
        "sha256": QWEN_SHA256, "file": "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        "out": "tests/golden/qwen2.5-coder-0.5b",
        "system": QWEN_SYSTEM, "cases": QWEN_TOKENIZER_CASES, "pre": "qwen2",
        "prompt_chat": QWEN_PROMPT_CHAT,
        # tokenizer.ggml.eos_token_id (<|im_end|>) and <|endoftext|>: the
        # end-of-generation set tis takes from this vocabulary
        "eos_ids": [151645, 151643], "sparse_ids": list(range(0, 151936, 4748)),
    },
}


# ---------------------------------------------------------------- helpers

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fnum(x):
    """float32 value -> shortest decimal that round-trips through float32."""
    x = np.float32(x)
    for p in range(6, 12):
        s = "%.*g" % (p, float(x))
        if np.float32(float(s)) == x:
            return float(s)
    return float(x)


def dumps(obj, indent=0):
    """JSON with lists of scalars (and lists of short scalar lists) inline."""
    pad = " " * indent

    def scalar(v):
        return not isinstance(v, (list, dict))

    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [pad + " " + json.dumps(k, ensure_ascii=False) + ": " + dumps(v, indent + 1)
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(scalar(v) or (isinstance(v, list) and all(scalar(w) for w in v)) for v in obj):
            return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
        items = [pad + " " + dumps(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path, obj):
    text = dumps(obj) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s (%d bytes)" % (os.path.relpath(path, ROOT), len(text.encode("utf-8"))))


# ---------------------------------------------------------------- tokenizer

def gguf_meta(reader):
    f = reader.fields
    meta = {}
    for k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type",
              "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.add_bos_token"):
        meta[k] = f[k].contents() if k in f else None
    return meta


# Qwen2's tokenizer.json pre-tokenizer: this regex split (isolated), then
# ByteLevel without its own regex; NFC normalizer.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_faithful_tokenizer(meta, pre="smollm2"):
    """tokenizers.Tokenizer equal to SmolLM2's original HF tokenizer.json:
    no normalizer; pre_tokenizer Sequence[Digits(individual_digits=True),
    ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)];
    BPE(vocab, merges) without unk/byte-fallback; ByteLevel decoder;
    ByteLevel post-processor (adds nothing); control tokens (token_type 3)
    as special added tokens (normalized=False, no strip).
    pre="qwen2": Qwen2's instead: NFC normalizer; pre_tokenizer
    Sequence[Split(QWEN2_SPLIT, Isolated), ByteLevel(add_prefix_space=False,
    trim_offsets=False, use_regex=False)]; the same BPE and decoder; control
    (3) and user-defined (4: <tool_call>, </tool_call>) tokens as added
    tokens, only the control ones special."""
    from tokenizers import Tokenizer

    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    merges = meta["tokenizer.ggml.merges"]
    assert meta["tokenizer.ggml.model"] == "gpt2", meta["tokenizer.ggml.model"]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate token strings"
    merge_pairs = []
    for m in merges:
        a, b = m.split(" ")  # byte-level tokens never contain a literal space
        merge_pairs.append([a, b])
    added_types = (3,) if pre == "smollm2" else (3, 4)
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": t == 3}
             for i, t in enumerate(types) if t in added_types]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merge_pairs},
    }
    if pre == "qwen2":
        spec["normalizer"] = {"type": "NFC"}
        spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}
        bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
              "use_regex": False}
        spec["post_processor"], spec["decoder"] = dict(bl), dict(bl)
    else:
        assert pre == "smollm2", pre
    return Tokenizer.from_str(json.dumps(spec)), added


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def render_chat(template, user, add_generation_prompt=True):
    import jinja2
    env = jinja2.Environment()
    return env.from_string(template).render(
        messages=[{"role": "user", "content": user}],
        add_generation_prompt=add_generation_prompt)


# ---------------------------------------------------------------- weights

def inv_permute(w, n_head):
    """Undo llama.cpp convert's permute() of attn_q / attn_k rows."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_weights(reader):
    from gguf.quants import dequantize
    out = {}
    for t in reader.tensors:
        a = dequantize(t.data, t.tensor_type)
        shape = tuple(int(x) for x in reversed(t.shape))  # ggml ne -> row-major
        out[t.name] = (np.asarray(a, dtype=np.float32).reshape(shape), t.tensor_type.name)
    return out


def check_dequant(model, gw, cfg):
    """Compare every transformers parameter with gguf-py's dequantisation."""
    n_head, n_kv = cfg["n_head"], cfg["n_kv"]
    permuted = cfg.get("arch", "llama") == "llama"  # llama.cpp permutes Q/K rows for llama only
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    hf_map = {"token_embd.weight": "model.embed_tokens.weight",
              "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    per = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
           "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
           "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
           "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    n_checked, worst = 0, 0.0
    exact_all = True
    results = {}
    for name, (w, ty) in gw.items():
        if name in hf_map:
            hf = hf_map[name]
        else:
            parts = name.split(".")
            assert parts[0] == "blk", name
            hf = "model.layers.%s.%s.%s" % (parts[1], per[parts[2]], parts[3])
        ref = w
        if ".attn_q." in name and permuted:
            ref = inv_permute(w, n_head)
        elif ".attn_k." in name and permuted:
            ref = inv_permute(w, n_kv)
        got = sd[hf]
        assert got.shape == ref.shape, (name, got.shape, ref.shape)
        d = float(np.max(np.abs(got - ref)))
        exact = bool(np.array_equal(got, ref))
        exact_all &= exact
        worst = max(worst, d)
        n_checked += 1
        if name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                    "blk.0.ffn_down.weight", "blk.%d.attn_v.weight" % (cfg["n_layer"] - 1),
                    "output.weight", "blk.0.attn_q.bias"):
            # also show that the *un*-permuted Q/K would not match
            extra = {}
            if permuted and (".attn_q." in name or ".attn_k." in name):
                extra["max_abs_diff_without_unpermute"] = float(np.max(np.abs(got - w)))
            results[name] = dict(type=ty, hf_param=hf, exact=exact, max_abs_diff=d, **extra)
    # tied embeddings (SmolLM2); a separate output.weight was compared above (Qwen)
    tied = "lm_head.weight" not in sd or np.array_equal(sd["lm_head.weight"],
                                                       sd["model.embed_tokens.weight"])
    assert ("output.weight" not in gw) == tied, "lm_head tied iff the GGUF has no output.weight"
    return {"tensors_checked": n_checked, "all_bitwise_equal": exact_all,
            "max_abs_diff": worst, "examples": results, "lm_head_tied_to_token_embd": bool(tied)}


# ---------------------------------------------------------------- numpy forward (GGUF layout)

def np_forward(gw, cfg, ids):
    """Reference forward over GGUF tensors as stored. llama: attn_q/attn_k
    rows in llama.cpp's permuted order, RoPE rotating adjacent pairs
    (x[2i], x[2i+1]) like ggml_rope mode 0. qwen2: rows as trained, RoPE
    rotating halves (x[i], x[i+hd/2]) like ggml's NeoX mode, Q/K/V biases,
    logits from output.weight when present. Returns logits [T, vocab]
    (float64 math)."""
    W = {k: v[0].astype(np.float64) for k, v in gw.items()}
    d, nh, nkv, hd = cfg["d_model"], cfg["n_head"], cfg["n_kv"], cfg["head_dim"]
    eps, theta = cfg["eps"], cfg["theta"]
    T = len(ids)
    x = W["token_embd.weight"][ids]

    def rms(v, w):
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True) + eps) * w

    inv = theta ** (-np.arange(0, hd, 2) / hd)          # [hd/2]
    ang = np.arange(T)[:, None] * inv[None, :]           # [T, hd/2]
    cos, sin = np.cos(ang), np.sin(ang)

    neox = cfg.get("arch", "llama") == "qwen2"

    def rope(v):  # v [T, H, hd], pairs (2i, 2i+1), or (i, i+hd/2) for NeoX
        if neox:
            a, b = v[..., :hd // 2], v[..., hd // 2:]
        else:
            a, b = v[..., 0::2], v[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(v)
        if neox:
            out[..., :hd // 2] = a * c - b * s
            out[..., hd // 2:] = a * s + b * c
        else:
            out[..., 0::2] = a * c - b * s
            out[..., 1::2] = a * s + b * c
        return out

    def lin(h, name):
        y = h @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    mask = np.triu(np.full((T, T), -np.inf), 1)
    for L in range(cfg["n_layer"]):
        p = "blk.%d." % L
        h = rms(x, W[p + "attn_norm.weight"])
        q = rope(lin(h, p + "attn_q").reshape(T, nh, hd))
        k = rope(lin(h, p + "attn_k").reshape(T, nkv, hd))
        v = lin(h, p + "attn_v").reshape(T, nkv, hd)
        g = nh // nkv
        att = np.empty((T, nh, hd))
        for hh in range(nh):
            s = q[:, hh, :] @ k[:, hh // g, :].T / math.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            att[:, hh, :] = s @ v[:, hh // g, :]
        x = x + att.reshape(T, d) @ W[p + "attn_output.weight"].T
        h = rms(x, W[p + "ffn_norm.weight"])
        gt = h @ W[p + "ffn_gate.weight"].T
        up = h @ W[p + "ffn_up.weight"].T
        x = x + ((gt / (1 + np.exp(-gt))) * up) @ W[p + "ffn_down.weight"].T
    x = rms(x, W["output_norm.weight"])
    return x @ W["output.weight" if "output.weight" in W else "token_embd.weight"].T


# ---------------------------------------------------------------- logits

def logit_record(row, k=TOPK, sparse_ids=SPARSE_IDS):
    row = np.asarray(row, dtype=np.float32)
    order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
    r64 = row.astype(np.float64)
    m = float(r64.max())
    lse = m + math.log(float(np.sum(np.exp(r64 - m))))
    return {
        "top": [[int(i), fnum(row[i])] for i in order],
        "stats": {"argmax": int(order[0]), "max": fnum(m), "min": fnum(r64.min()),
                  "mean": fnum(r64.mean()), "std": fnum(r64.std()),
                  "logsumexp": fnum(lse),
                  "top1_minus_top2": fnum(float(row[order[0]]) - float(row[order[1]]))},
        "sparse_ids": sparse_ids,
        "sparse_logits": [fnum(row[i]) for i in sparse_ids],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-name", choices=sorted(PROFILES), default="smollm2-135m",
                    help="which supported model (its sha256, prompts, output folder)")
    ap.add_argument("model", nargs="?", help="the GGUF (default: the named model's file "
                    "under models/)")
    ap.add_argument("--out", help="fixture folder (default: the named model's)")
    ap.add_argument("--any-model", action="store_true",
                    help="do not insist on the expected sha256")
    args = ap.parse_args()
    prof = PROFILES[args.model_name]
    args.model = args.model or os.path.join(ROOT, "models", prof["file"])
    args.out = args.out or os.path.join(ROOT, prof["out"])
    qwen = prof["pre"] == "qwen2"

    import torch
    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    import tokenizers
    import transformers
    import gguf
    from gguf import GGUFReader

    model_path = os.path.abspath(args.model)
    if not os.path.isfile(model_path):
        sys.exit("model not found: %s (see scripts/fetch_model.sh, or pass the path)" % model_path)
    sha = sha256_file(model_path)
    print("model %s sha256 %s" % (model_path, sha))
    if sha != prof["sha256"] and not args.any_model:
        sys.exit("sha256 mismatch (expected %s); pass --any-model to override" % prof["sha256"])
    os.makedirs(args.out, exist_ok=True)

    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                "gguf": getattr(gguf, "__version__", None) or _dist_version("gguf"),
                "numpy": np.__version__}
    print("versions:", versions)

    reader = GGUFReader(model_path)
    meta = gguf_meta(reader)
    f = reader.fields
    arch = f["general.architecture"].contents()
    assert arch == ("qwen2" if qwen else "llama"), arch
    cfg = {"n_layer": int(f[arch + ".block_count"].contents()),
           "d_model": int(f[arch + ".embedding_length"].contents()),
           "n_head": int(f[arch + ".attention.head_count"].contents()),
           "n_kv": int(f[arch + ".attention.head_count_kv"].contents()),
           "theta": float(f[arch + ".rope.freq_base"].contents()),
           "eps": float(f[arch + ".attention.layer_norm_rms_epsilon"].contents())}
    if arch != "llama":  # (absent for llama: SmolLM2's fixture stays as it was)
        cfg["arch"] = arch
    cfg["head_dim"] = cfg["d_model"] // cfg["n_head"]
    print("config:", cfg)

    # ------------------------------------------------ tokenizer fixture
    tok, added = build_faithful_tokenizer(meta, prof["pre"])
    from transformers import AutoTokenizer
    mdir, mfile = os.path.split(model_path)
    hf_tok = AutoTokenizer.from_pretrained(mdir, gguf_file=mfile)
    hf_spec = json.loads(hf_tok.backend_tokenizer.to_str())

    greedy_prompt = render_chat(meta["tokenizer.chat_template"], GREEDY_USER)
    expected_prompt = chatml(prof["system"], GREEDY_USER)
    assert greedy_prompt == expected_prompt, repr(greedy_prompt)
    assert render_chat(meta["tokenizer.chat_template"], "Hi there!") == dict(prof["cases"])["chatml"]

    cases, diffs = [], []
    for name, text in prof["cases"]:
        ids = encode(tok, text)
        dec = tok.decode(ids, skip_special_tokens=False)
        assert dec == text, (name, dec, text)  # byte-level BPE round-trips exactly
        hf_ids = hf_tok(text, add_special_tokens=False)["input_ids"]
        cases.append({"name": name, "text": text, "ids": ids})
        if hf_ids != ids:
            diffs.append({"name": name, "faithful": ids, "transformers_gguf": hf_ids})
    # probe strings exercising the Digits pre-tokenizer beyond ASCII digits
    probes = ["\u00b2\u00b3", " \u00b9\u00b2", "\u00bd\u00bc", "\uff11\uff12\uff13",
              " \u0661\u0662\u0663", "\u2460\u2461", " 123", "a1b2"]
    for text in probes:
        ids, hf_ids = encode(tok, text), hf_tok(text, add_special_tokens=False)["input_ids"]
        if ids != hf_ids:
            diffs.append({"name": "probe", "text": text, "faithful": ids,
                          "transformers_gguf": hf_ids})
    for dd in diffs:
        print("tokenizer difference:", dd)

    tok_fix = {
        "source": ("HuggingFace tokenizers %s Tokenizer rebuilt from the GGUF metadata "
                   "(gguf-py %s): vocab=tokenizer.ggml.tokens, merges=tokenizer.ggml.merges, "
                   "no normalizer, pre_tokenizer Sequence[Digits(individual_digits=True), "
                   "ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)], "
                   "BPE (no unk, no byte_fallback), ByteLevel decoder; token_type==3 (control) "
                   "tokens are special added tokens, matched in the input text. This mirrors "
                   "SmolLM2's original tokenizer.json. encode(text, add_special_tokens=False); "
                   "no BOS (add_bos_token=false). Built by scripts/make_golden.py."
                   % (tokenizers.__version__, versions["gguf"])) if not qwen else
                  ("HuggingFace tokenizers %s Tokenizer rebuilt from the GGUF metadata "
                   "(gguf-py %s): vocab=tokenizer.ggml.tokens, merges=tokenizer.ggml.merges, "
                   "NFC normalizer, pre_tokenizer Sequence[Split(Qwen2's regex, Isolated), "
                   "ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)], "
                   "BPE (no unk, no byte_fallback), ByteLevel decoder; token_type 3 (control) "
                   "tokens are special added tokens, token_type 4 (user-defined: <tool_call>, "
                   "</tool_call>) non-special added tokens, all matched in the input text. This "
                   "mirrors Qwen2.5's original tokenizer.json. encode(text, "
                   "add_special_tokens=False); no BOS (add_bos_token=false). All texts are "
                   "already NFC (tis does not normalise GGUF tokenizers, as llama.cpp does not). Built by "
                   "scripts/make_golden.py --model-name qwen2.5-coder-0.5b."
                   % (tokenizers.__version__, versions["gguf"])),
        "model_sha256": sha,
        "special_tokens": [[a["id"], a["content"]] for a in added],
        "transformers_gguf_tokenizer": {
            "version": transformers.__version__,
            "pre_tokenizer": hf_spec.get("pre_tokenizer"),
            "differences_vs_faithful": diffs,
            "note": "transformers' qwen2 GGUF conversion, compared case by case" if qwen else
                    ("transformers' GGUF conversion uses a bare ByteLevel pre-tokenizer "
                     "(no Digits split). SmolLM2's vocab has only single-digit tokens, so ASCII "
                     "digits tokenise identically; differences can only appear for other "
                     "Unicode numerics (N* categories) that the Digits splitter isolates.")
                    if not any(p.get("type") == "Digits" for p in
                               (hf_spec.get("pre_tokenizer") or {}).get("pretokenizers", []))
                    else "transformers' conversion includes a Digits split",
        },
        "cases": cases,
    }
    write_json(os.path.join(args.out, "tokenizer.json"), tok_fix)

    # ------------------------------------------------ model
    from transformers import AutoModelForCausalLM
    log_records = []

    class H(logging.Handler):
        def emit(self, rec):
            log_records.append("%s: %s" % (rec.levelname, rec.getMessage()))

    handler = H(level=logging.WARNING)
    logging.getLogger("transformers").addHandler(handler)
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        model = AutoModelForCausalLM.from_pretrained(
            mdir, gguf_file=mfile, dtype=torch.float32, attn_implementation="eager")
    logging.getLogger("transformers").removeHandler(handler)
    load_msgs = log_records + ["%s: %s" % (w.category.__name__, w.message) for w in wlist]
    for m in load_msgs:
        print("load warning:", m)
    model.eval()
    mc = model.config
    print("hf config: rope", getattr(mc, "rope_parameters", None) or getattr(mc, "rope_theta", None),
          "eps", mc.rms_norm_eps, "tie", mc.tie_word_embeddings,
          "heads", mc.num_attention_heads, mc.num_key_value_heads)
    assert all(p.dtype == torch.float32 for p in model.parameters())

    gw = gguf_weights(reader)
    dq = check_dequant(model, gw, cfg)
    print("dequant check:", json.dumps(dq))
    assert dq["all_bitwise_equal"], "transformers weights != gguf-py dequantisation"
    assert dq["lm_head_tied_to_token_embd"] == ("output.weight" not in gw)

    def hf_logits(ids):
        with torch.no_grad():
            out = model(torch.tensor([ids], dtype=torch.long), use_cache=False)
        return out.logits[0].float().numpy()

    prompts = [("plain", PROMPT_PLAIN), ("chatml", prof["prompt_chat"]),
               ("paragraph", PROMPT_PARAGRAPH)]
    precs = []
    np_check = {}
    for name, text in prompts:
        ids = encode(tok, text)
        lg = hf_logits(ids)
        rec = {"name": name, "text": text, "ids": ids, "n_tokens": len(ids),
               "last": logit_record(lg[-1], sparse_ids=prof["sparse_ids"])}
        if name == "paragraph":
            mid = len(ids) // 2
            rec["intermediate"] = {"position": mid,
                                   **logit_record(lg[mid], sparse_ids=prof["sparse_ids"])}
        ref = np_forward(gw, cfg, ids)
        diff = float(np.max(np.abs(ref - lg.astype(np.float64))))
        np_check[name] = {"max_abs_diff_all_positions": diff,
                          "argmax_equal_all_positions": bool(
                              np.array_equal(ref.argmax(-1), lg.argmax(-1)))}
        print("prompt %-9s %3d tokens  top1 %d (%.4f)  numpy-vs-hf max|diff| %.3g"
              % (name, len(ids), rec["last"]["stats"]["argmax"], rec["last"]["stats"]["max"], diff))
        assert diff < 1e-2, diff
        precs.append(rec)

    computation = ("transformers %s AutoModelForCausalLM.from_pretrained(gguf_file=..., "
                   "dtype=torch.float32, attn_implementation='eager') on CPU, torch %s, 2 threads: "
                   "all weights dequantised to f32 (bitwise equal to gguf.quants.dequantize, "
                   "attn_q/attn_k rows un-permuted from llama.cpp order), f32 arithmetic, "
                   "full-sequence forward without KV cache. Cross-checked against a float64 numpy "
                   "forward over the GGUF tensors as stored (permuted Q/K + adjacent-pair RoPE)."
                   % (transformers.__version__, torch.__version__)) if not qwen else (
                   "transformers %s AutoModelForCausalLM.from_pretrained(gguf_file=..., "
                   "dtype=torch.float32, attn_implementation='eager') on CPU, torch %s, 2 threads: "
                   "all weights dequantised to f32 (bitwise equal to gguf.quants.dequantize; qwen2 "
                   "Q/K rows are stored unpermuted; lm_head = output.weight, not tied), f32 "
                   "arithmetic, full-sequence forward without KV cache. Cross-checked against a "
                   "float64 numpy forward over the GGUF tensors as stored (half-rotation NeoX RoPE, "
                   "theta %g, Q/K/V biases)." % (transformers.__version__, torch.__version__,
                                                 cfg["theta"]))
    logits_fix = {
        "source": computation,
        "model_sha256": sha,
        "versions": versions,
        "config": cfg,
        "bos_prepended": False,
        "transformers_load_messages": load_msgs,
        "dequant_check": dq,
        "numpy_gguf_layout_check": np_check,
        "note": ("logit values are f32 from the reference; a C f32 engine with different "
                 "summation order typically lands within ~1e-3..1e-2 absolute. 'top' is "
                 "[[id, logit], ...] sorted by logit descending."),
        "prompts": precs,
    }
    write_json(os.path.join(args.out, "logits.json"), logits_fix)

    # ------------------------------------------------ greedy
    def greedy(prompt_ids, steps=GREEDY_STEPS):
        ids = list(prompt_ids)
        gen, margins, top2 = [], [], []
        stopped = False
        for _ in range(steps):
            row = hf_logits(ids)[-1].astype(np.float64)
            o = np.argsort(-row, kind="stable")[:2]
            nxt = int(o[0])
            gen.append(nxt)
            margins.append(fnum(row[o[0]] - row[o[1]]))
            top2.append([[int(o[0]), fnum(row[o[0]])], [int(o[1]), fnum(row[o[1]])]])
            ids.append(nxt)
            if nxt in prof["eos_ids"]:
                stopped = True
                break
        mn = min(range(len(margins)), key=lambda i: margins[i])
        return {"generated_ids": gen, "generated_text": tok.decode(gen, skip_special_tokens=False),
                "stopped_at_eos": stopped, "margins": margins, "top2": top2,
                "min_margin": margins[mn], "min_margin_step": mn}

    prompt_ids = encode(tok, greedy_prompt)
    g = greedy(prompt_ids)
    print("greedy (%d tokens%s): %r" % (len(g["generated_ids"]),
          ", stopped at eos" if g["stopped_at_eos"] else "", g["generated_text"]))
    print("smallest margin %.6f at step %d" % (g["min_margin"], g["min_margin_step"]))
    extra = []
    for name, text in [("haiku_chat" if not qwen else "code_chat", prof["prompt_chat"]),
                       ("plain", PROMPT_PLAIN)]:
        pids = encode(tok, text)
        e = greedy(pids)
        print("extra greedy %s (%d tokens%s): %r  min margin %.6f at step %d"
              % (name, len(e["generated_ids"]), ", stopped at eos" if e["stopped_at_eos"] else "",
                 e["generated_text"], e["min_margin"], e["min_margin_step"]))
        extra.append({"name": name, "prompt_text": text, "prompt_ids": pids, **e})

    greedy_fix = {
        "source": computation,
        "model_sha256": sha,
        "versions": versions,
        "chat_template_render": "tokenizer.chat_template (jinja2), add_generation_prompt=True, "
                                "messages=[{role: user}] -> default system message inserted",
        "user_message": GREEDY_USER,
        "prompt_text": greedy_prompt,
        "prompt_ids": prompt_ids,
        "max_new_tokens": GREEDY_STEPS,
        "decoding": ("greedy argmax over f32 logits (ties -> lowest id); full recompute each "
                     "step (no KV cache); stop only at eos id 2 (eos is included in "
                     "generated_ids when hit)") if not qwen else
                    ("greedy argmax over f32 logits (ties -> lowest id); full recompute each "
                     "step (no KV cache); stop only at <|im_end|> 151645 or <|endoftext|> 151643 "
                     "(the stop token is included in generated_ids when hit)"),
        **g,
        "extra_runs_note": ("same procedure on other prompts (logits.json prompts 'chatml' and "
                            "'plain'), for longer KV-cache runs"),
        "extra_runs": extra,
    }
    write_json(os.path.join(args.out, "greedy.json"), greedy_fix)


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
