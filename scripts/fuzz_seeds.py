#!/usr/bin/env python3
"""Seed corpora for the fuzz targets (fuzz/README.md), made from real files:

  gguf            the default model's header, its big tokenizer arrays cut to
                  their first entries (a valid small GGUF), and the file's
                  first 4 KiB as they are
  tokenizer_json  an HF tokenizer.json built from that GGUF's vocabulary,
                  merges, special tokens and SmolLM2's pre-tokenizer, and
                  a copy with the NFC normalizer
  config_json     the HF config.json of the GGUF's hyper-parameters
  st_index        a model.safetensors.index.json over two real shards
  safetensors     tests/golden/st_fixture.safetensors (written by the
                  reference safetensors package) and the committed heads
  head            the committed importance-head checkpoints (configs/heads)
  kv_block        KV blocks with their layouts: q8_0 keys (scales), f16,
                  q4_0 and bf16 values, a bias; the layout in fuzz_kv_block.c
  tokenize        README text, a committed dataset's context, chat markup,
                  decomposed (non-NFC) text, invalid UTF-8
  jsonl           the first lines of the committed datasets
  yaml            configs/serve.yaml
  press_name      policy names with every suffix (fuzz/regressions/press_name
                  holds them too), budget and threshold bytes, score bytes
  envelope        one packed Envelope per kind (written by the envelope target)
  label_shard, label_manifest
                  a shard and manifest written by `tis label` (the default
                  model, one short sample)

usage: scripts/fuzz_seeds.py OUT_DIR [--tis BIN] [--envelope BIN]
Stdlib only. Each target's seeds go to OUT_DIR/<target>/.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.environ.get("TIS_MODEL") or os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

# ---- GGUF: read the header (KVs), write a small one --------------------------
SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class Reader:
    def __init__(self, f):
        self.f = f

    def take(self, fmt):
        n = struct.calcsize(fmt)
        return struct.unpack(fmt, self.f.read(n))[0]

    def string(self):
        n = self.take("<Q")
        return self.f.read(n)

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(f"gguf type {t}")


def gguf_kvs(path):
    with open(path, "rb") as f:
        r = Reader(f)
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not GGUF")
        version, _n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
        kvs = []
        for _ in range(n_kv):
            key = r.string().decode()
            t = r.take("<I")
            kvs.append((key, t, r.value(t)))
        return version, kvs


def pack_value(t, v):
    if t in SCALAR:
        return struct.pack(SCALAR[t], v)
    if t == 8:
        return struct.pack("<Q", len(v)) + v
    et, items = v
    return struct.pack("<IQ", et, len(items)) + b"".join(pack_value(et, x) for x in items)


def gguf_write(path, version, kvs):
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, 0, len(kvs)))
    for key, t, v in kvs:
        k = key.encode()
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", t) + pack_value(t, v)
    with open(path, "wb") as f:
        f.write(out)


def cut(kvs, n_vocab, n_merges):
    """The tokenizer arrays cut to their first entries (ids stay < n_vocab)."""
    out = []
    for key, t, v in kvs:
        if t == 9 and key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            v = (v[0], v[1][:n_vocab])
        elif t == 9 and key == "tokenizer.ggml.merges":
            v = (v[0], v[1][:n_merges])
        elif t == 9:
            v = (v[0], v[1][:64])
        out.append((key, t, v))
    return out


def kv_get(kvs, key, default=None):
    for k, _t, v in kvs:
        if k == key:
            return v
    return default


def tokenizer_json(kvs):
    toks = [t.decode("utf-8", "replace") for t in kv_get(kvs, "tokenizer.ggml.tokens")[1]]
    types = kv_get(kvs, "tokenizer.ggml.token_type", (0, []))[1]
    merges = [m.decode("utf-8", "replace") for m in kv_get(kvs, "tokenizer.ggml.merges", (0, []))[1]]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(toks) if i < len(types) and types[i] == 3]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {s: i for i, s in enumerate(toks)}, "merges": merges},
    }


def config_json(kvs):
    arch = kv_get(kvs, "general.architecture", b"llama").decode()
    g = lambda k, d=None: kv_get(kvs, f"{arch}.{k}", d)  # noqa: E731
    d, nh = g("embedding_length"), g("attention.head_count")
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
        "intermediate_size": g("feed_forward_length"), "num_hidden_layers": g("block_count"),
        "num_attention_heads": nh, "num_key_value_heads": g("attention.head_count_kv", nh),
        "head_dim": d // nh, "rms_norm_eps": g("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": g("rope.freq_base", 10000.0), "max_position_embeddings": g("context_length", 2048),
        "vocab_size": len(kv_get(kvs, "tokenizer.ggml.tokens")[1]), "tie_word_embeddings": True,
        "bos_token_id": kv_get(kvs, "tokenizer.ggml.bos_token_id", 1),
        "eos_token_id": kv_get(kvs, "tokenizer.ggml.eos_token_id", 2), "torch_dtype": "bfloat16",
        "rope_scaling": None,
    }


def kv_block(n_layer, n_kv, hd, kt, vt, bias, n_past, lens):
    """A valid fuzz_kv_block input: the 8-byte layout, the stream lengths,
    the block (per stream: key scales for q8_0 / q4_0 keys, key rows, value
    rows, positions, biases)."""
    types = ["f32", "f16", "bf16", "q8_0", "q4_0"]
    def rows(t, n, seed):
        out = b""
        for i in range(n):
            if t == "f32":
                out += struct.pack(f"<{hd}f", *[((seed + i + d) % 7 - 3) * 0.25 for d in range(hd)])
            elif t in ("f16", "bf16"):
                out += struct.pack(f"<{hd}H", *[(0x3c00 if t == "f16" else 0x3f80) ^ (d % 3) for d in range(hd)])
            elif t == "q8_0":
                for b in range(hd // 32):
                    out += struct.pack("<H", 0x2000) + bytes(((seed + i + d) * 37) % 256 for d in range(32))
            else:  # q4_0
                for b in range(hd // 32):
                    out += struct.pack("<H", 0x2400) + bytes(((seed + i + d) * 29) % 256 for d in range(16))
        return out
    head = bytes([n_layer - 1, n_kv - 1, 1 if hd == 64 else 0, types.index(kt), types.index(vt), int(bias)])
    head += struct.pack("<H", n_past) + struct.pack(f"<{len(lens)}H", *lens)
    blk = b""
    for s, n in enumerate(lens):
        if kt in ("q8_0", "q4_0"):
            blk += struct.pack(f"<{hd}f", *[0.5 + (d % 5) for d in range(hd)])
        blk += rows(kt, n, s) + rows(vt, n, s + 1) + struct.pack(f"<{n}i", *range(n_past - n, n_past))
        if bias:
            blk += struct.pack(f"<{n}f", *[-0.5 * i for i in range(n)])
    return head + blk


def write(d, name, data):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tis", help="a tis binary, for the label shard and manifest seeds")
    ap.add_argument("--envelope", help="a fuzz_envelope (or fuzz_replay_envelope) binary")
    a = ap.parse_args()
    out = lambda t: os.path.join(a.out, t)  # noqa: E731
    for t in os.listdir(a.out) if os.path.isdir(a.out) else []:
        shutil.rmtree(os.path.join(a.out, t))

    if os.path.exists(MODEL):
        version, kvs = gguf_kvs(MODEL)
        os.makedirs(out("gguf"), exist_ok=True)
        gguf_write(os.path.join(out("gguf"), "header_cut.gguf"), version, cut(kvs, 600, 300))
        with open(MODEL, "rb") as f:
            write(out("gguf"), "prefix_4k.gguf", f.read(4096))
        small = cut(kvs, 600, 300)
        write(out("tokenizer_json"), "tokenizer.json", json.dumps(tokenizer_json(small), ensure_ascii=False))
        nfc = dict(tokenizer_json(small), normalizer={"type": "NFC"})  # reaches unicode_nfc
        write(out("tokenizer_json"), "tokenizer_nfc.json", json.dumps(nfc, ensure_ascii=False))
        write(out("config_json"), "config.json", json.dumps(config_json(kvs), indent=2))
    else:
        print(f"fuzz_seeds: {MODEL} is missing: no gguf / tokenizer_json / config_json seeds", file=sys.stderr)

    write(out("st_index"), "model.safetensors.index.json", json.dumps({
        "metadata": {"total_size": 4096},
        "weight_map": {"f32": "a.safetensors", "model.layers.0.w": "a.safetensors", "i64": "a.safetensors",
                       "importance_head.out_proj.weight": "b.safetensors",
                       "importance_head.feature_mean": "b.safetensors"}}, indent=2))
    os.makedirs(out("safetensors"), exist_ok=True)
    os.makedirs(out("head"), exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tests", "golden", "st_fixture.safetensors"), out("safetensors"))
    for name in sorted(os.listdir(os.path.join(ROOT, "configs", "heads"))):
        if name.endswith(".safetensors"):
            shutil.copy(os.path.join(ROOT, "configs", "heads", name), out("head"))

    datasets = [os.path.join(ROOT, "docs", "results", "pipeline", n) for n in ("passkey_1024.jsonl",)]
    lines = []
    for p in datasets:
        with open(p, encoding="utf-8") as f:
            lines += [next(f) for _ in range(2)]
    for i, line in enumerate(lines):
        write(out("jsonl"), f"dataset_{i}.jsonl", line)
    write(out("jsonl"), "two_lines.jsonl", "".join(lines))
    ctx = json.loads(lines[0])["context"]
    write(out("tokenize"), "context.txt", ctx[:2000])
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        write(out("tokenize"), "readme.txt", f.read()[:3000])
    write(out("tokenize"), "chat.txt", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n"
                                       "What is 12345 + 678?<|im_end|>\n<|im_start|>assistant\n")
    write(out("tokenize"), "decomposed.txt", "cafe\u0301 A\u030a \u1112\u1161\u11ab o\u0302\u0323 "
          "\u212b \u0958 \u0f73 \u0344 x\u0301\u0316\u0327 <|im_end|>\u0301")
    write(out("tokenize"), "invalid_utf8.bin", b"caf\xc3\xa9 \xe2\x82\xac \xff\xfe \xc3 \xed\xa0\x80 \xf4\x90\x80\x80 z")
    write(out("kv_block"), "q8_0_f16.bin", kv_block(1, 1, 32, "q8_0", "f16", False, 3, [2]))
    write(out("kv_block"), "q8_0_q4_0_bias.bin", kv_block(2, 2, 64, "q8_0", "q4_0", True, 9, [3, 0, 9, 1]))
    write(out("kv_block"), "f32_bf16.bin", kv_block(1, 2, 32, "f32", "bf16", False, 4, [4, 2]))
    for i, nm in enumerate(["tis+lpool5+recent64/8", "kvzip+pool9+cap2", "tis+pool7+cap3+hook", "streaming+recent4/3",
                            "adakv:knorm", "random+lpool3", "tis_query+recent16",
                            "selfinfo+lpool5+recent8", "tis_si+lpool5|tis+lpool5+recent64/8", "hb|snapkv"]):
        write(out("press_name"), f"name_{i}.bin", bytes([17 + 13 * i, 5 + 7 * i, 40 * i % 256]) + nm.encode() + b"\0" +
              bytes((j * 37 + i) % 256 for j in range(64)))
    write(out("yaml"), "serve.yaml", open(os.path.join(ROOT, "configs", "serve.yaml"), encoding="utf-8").read())

    if a.envelope:
        os.makedirs(out("envelope"), exist_ok=True)
        subprocess.run([a.envelope], env=dict(os.environ, TIS_FUZZ_SEEDS=out("envelope")), check=True)
    if a.tis and os.path.exists(MODEL):
        with tempfile.TemporaryDirectory() as tmp:
            ds = os.path.join(tmp, "d.jsonl")
            with open(ds, "w") as f:
                f.write(json.dumps({"id": "s0", "context": "The passkey is 4711. Remember it. The sky is blue.",
                                    "question": "What is the passkey?", "answers": ["4711"]}) + "\n")
                f.write(json.dumps({"id": "s1", "context": "", "question": "?"}) + "\n")
            od = os.path.join(tmp, "labels")
            r = subprocess.run([a.tis, "label", "-m", MODEL, "--dataset", ds, "--output", od, "--layer", "3"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode == 0:
                shutil.copytree(od, out("label_shard"), ignore=shutil.ignore_patterns("*.json*"))
                write(out("label_manifest"), "manifest.jsonl", open(os.path.join(od, "manifest.jsonl")).read())
            else:  # the targets still run, from empty corpora
                print(f"fuzz_seeds: tis label failed, no label seeds: {r.stderr.strip()[-300:]}", file=sys.stderr)
    for t in sorted(os.listdir(a.out)):
        print(f"  {t}: {len(os.listdir(out(t)))} seeds")


if __name__ == "__main__":
    main()
