#!/usr/bin/env python3
"""bench_torch: the PyTorch baseline that scripts/bench_gpu.sh sets beside `tis bench --device cuda:0`.

A Llama-style decoder in plain PyTorch (eager: no torch.compile, no CUDA graphs), random bf16
weights at the shapes of `tis gen-model` presets (smollm2-135m, mistral-7b, llama3-8b), on one GPU:

  prefill  one sequence of T tokens (2k / 8k / 32k) in one forward pass: fused QKV and gate/up
           matmuls (cuBLAS through torch), RoPE, F.scaled_dot_product_attention(is_causal=True)
           restricted to the flash / cuDNN / memory-efficient kernels (never the T x T math
           kernel), logits of the last token only (as tis prefill computes them);
  decode   B sequences (1 / 16 / 64) each holding a KV cache of context x budget entries
           (budgets 1 / 0.25 / 0.1: what tis keeps after compression), one token per sequence
           per step, greedy; GQA by folding each kv head's query group into the query length
           (the cache is read once, never repeated per query head).

Derived quantities (the formulas are in flops_prefill / bytes_decode below, also used by
scripts/bench_gpu_report.py for tis's own rows):
  prefill MFU   = FLOPs / s / peak bf16 dense FLOP/s; FLOPs = 2 x (matmul parameters) x T
                  + causal attention 4 x head_dim x n_head x T(T+1)/2 per layer + the last
                  token's lm_head 2 x d x V.
  decode HBM    = bytes / s / peak HBM bytes/s; bytes per step = every matrix once (weights
                  at their storage size: bf16 here) + the lm_head + each sequence's K and V
                  read once (+ the new entry written).
Peaks (H200 SXM, NVIDIA H200 Tensor Core GPU datasheet, nvidia.com/en-us/data-center/h200):
  BF16 Tensor Core 1,979 TFLOP/s *with sparsity*, so 989.5 TFLOP/s dense; HBM3e 4.8 TB/s.
  Override with --peak_tflops / --peak_tbs (an H200 NVL is lower: see its datasheet). For
  scale, the device notes of this workplace saw an 8192^3 bf16 matmul at 769-798 TFLOP/s and a
  device-to-device copy at about 4.3 TB/s on this machine kind (not measured by this script).

Output: --out DIR gets NAME.json (all rows + the environment; --name, default torch) and NAME.csv. Exit status: 0,
2 when torch (or a CUDA device) is absent, with the reason on stderr. `--plan` prints the
shapes, FLOPs and bytes without torch (a dry run).
"""
import argparse
import csv
import json
import math
import os
import sys
import time

PEAK_BF16_TFLOPS = 989.5  # H200 SXM datasheet: 1,979 with 2:4 sparsity, halved for dense
PEAK_HBM_TBS = 4.8        # H200 datasheet: HBM3e bandwidth

# The presets of formats/gen_model.c (d_model, n_layer, n_head, n_kv_head, d_ff, n_vocab, rope
# theta, tied embeddings): the same shapes `tis gen-model --config NAME` writes.
MODELS = {
    "smollm2-135m": dict(d=576, L=30, h=9, kv=3, ff=1536, V=49152, theta=100000.0, tied=True),
    "mistral-7b": dict(d=4096, L=32, h=32, kv=8, ff=14336, V=32000, theta=1000000.0, tied=False),
    "llama3-8b": dict(d=4096, L=32, h=32, kv=8, ff=14336, V=128256, theta=500000.0, tied=False),
}


def matmul_params(m):
    """Parameters of the per-layer matrices, all layers (no embedding, no lm_head)."""
    hd = m["d"] // m["h"]
    per = m["d"] * (m["h"] + 2 * m["kv"]) * hd + m["h"] * hd * m["d"] + 3 * m["d"] * m["ff"]
    return m["L"] * per


def flops_prefill(m, T):
    """FLOPs of one prefill of T tokens: matmuls, causal attention (only the visible half), the
    last token's logits. Norms, RoPE, softmax exponentials are left out (< 1 %)."""
    hd = m["d"] // m["h"]
    mm = 2 * matmul_params(m) * T
    att = m["L"] * m["h"] * 4 * hd * (T * (T + 1) // 2)
    return mm + att + 2 * m["d"] * m["V"]


def bytes_decode(m, B, kv_len, weight_bytes=None, kv_elem_bytes=2):
    """HBM bytes of one decode step of B sequences whose caches hold kv_len entries each:
    the weights once (weight_bytes: their storage size; default bf16 matrices + lm_head), B
    embedding rows, K and V read (kv_len entries) and the new entry written, per layer and kv
    head. Activations (a few MB) are left out."""
    hd = m["d"] // m["h"]
    if weight_bytes is None:
        weight_bytes = 2 * (matmul_params(m) + m["V"] * m["d"])
    kv = B * m["L"] * 2 * m["kv"] * hd * kv_elem_bytes * (kv_len + 1)
    return weight_bytes + B * m["d"] * 2 + kv


def plan(args):
    rows = []
    for name in args.models:
        m = MODELS[name]
        for T in args.prefill:
            rows.append(dict(model=name, test="prefill", tokens=T, flops=flops_prefill(m, T)))
        for B in args.batches:
            for b in args.budgets:
                kv_len = max(1, int(args.context * b))
                rows.append(dict(model=name, test="decode", batch=B, budget=b, kv_len=kv_len,
                                 bytes_per_step=bytes_decode(m, B, kv_len)))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2-135m,mistral-7b", type=lambda s: s.split(","))
    ap.add_argument("--prefill", default="2048,8192,32768", type=lambda s: [int(x) for x in s.split(",") if x])
    ap.add_argument("--batches", default="1,16,64", type=lambda s: [int(x) for x in s.split(",") if x])
    ap.add_argument("--budgets", default="1,0.25,0.1", type=lambda s: [float(x) for x in s.split(",") if x])
    ap.add_argument("--context", type=int, default=8192, help="decode: the uncompressed context length")
    ap.add_argument("--steps", type=int, default=32, help="decode: timed steps per configuration")
    ap.add_argument("--reps", type=int, default=3, help="prefill: timed repetitions (best kept)")
    ap.add_argument("--layers", type=int, default=0, help="fewer layers than the preset (0: all)")
    ap.add_argument("--time_limit", type=float, default=150.0, help="seconds; later configurations are skipped")
    ap.add_argument("--peak_tflops", type=float, default=PEAK_BF16_TFLOPS)
    ap.add_argument("--peak_tbs", type=float, default=PEAK_HBM_TBS)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--out", default="", help="folder for NAME.json and NAME.csv")
    ap.add_argument("--name", default="torch", help="file name stem under --out (default torch)")
    ap.add_argument("--plan", action="store_true", help="print shapes, FLOPs and bytes; no torch needed")
    args = ap.parse_args()
    for n in args.models:
        if n not in MODELS:
            sys.exit(f"bench_torch: unknown model '{n}' (known: {', '.join(MODELS)})")
    if args.plan:
        print(json.dumps(plan(args), indent=1))
        return 0
    try:
        import torch  # noqa: F401
    except ImportError as e:
        print(f"bench_torch: PyTorch is not installed here ({e}); it runs where torch and a CUDA GPU are "
              "(the lent H200 machine has both). Nothing was measured.", file=sys.stderr)
        return 2
    import torch
    if not torch.cuda.is_available():
        print("bench_torch: torch sees no CUDA device; nothing was measured.", file=sys.stderr)
        return 2
    rows, env = run_all(args)
    env.update(peak_bf16_tflops=args.peak_tflops, peak_hbm_tbs=args.peak_tbs,
               peak_source="NVIDIA H200 datasheet (SXM): 1979 TFLOP/s bf16 with sparsity / 2; 4.8 TB/s HBM3e")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, args.name + ".json"), "w") as f:
            json.dump(dict(env=env, rows=rows), f, indent=1)
        keys = ["impl", "model", "test", "tokens", "batch", "budget", "kv_len", "seconds", "tokens_per_s",
                "tflops", "mfu", "hbm_tbs", "hbm_frac", "error"]
        with open(os.path.join(args.out, args.name + ".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow(r)
    print(json.dumps(dict(env=env, rows=rows), indent=1))
    return 0


# ---- the torch part (imported only when measuring) --------------------------------------------

def _rms(x, w, eps=1e-5):
    import torch
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def _rope(x, cos, sin):
    """x [B, T, heads, hd], rotated by halves (the HF Llama layout); cos/sin [T, hd/2]."""
    import torch
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h].float(), x[..., h:].float()
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).to(x.dtype)


class Llama:
    """Random bf16 weights at a preset's shapes (std 1/sqrt(fan_in): activations stay O(1))."""

    def __init__(self, m, layers, device):
        import torch
        self.m, self.dev = m, device
        self.L = layers or m["L"]
        d, h, kv, ff, V = m["d"], m["h"], m["kv"], m["ff"], m["V"]
        self.hd = d // h
        g = torch.Generator(device=device)
        g.manual_seed(1)

        def w(rows, cols):
            t = torch.empty(rows, cols, device=device, dtype=torch.bfloat16)
            return t.normal_(0.0, 1.0 / math.sqrt(cols), generator=g)

        self.emb = w(V, d)
        self.lm = self.emb if m["tied"] else w(V, d)
        self.layers = [dict(n1=torch.ones(d, device=device, dtype=torch.bfloat16),
                            qkv=w((h + 2 * kv) * self.hd, d), o=w(d, h * self.hd),
                            n2=torch.ones(d, device=device, dtype=torch.bfloat16),
                            gu=w(2 * ff, d), down=w(d, ff)) for _ in range(self.L)]
        self.nf = torch.ones(d, device=device, dtype=torch.bfloat16)
        self.inv_freq = 1.0 / (m["theta"] ** (torch.arange(0, self.hd, 2, device=device).float() / self.hd))

    def angles(self, pos):
        import torch
        a = pos.float()[:, None] * self.inv_freq[None, :]
        return torch.cos(a), torch.sin(a)

    def _mlp(self, x, lw):
        import torch.nn.functional as F
        gu = _rms(x, lw["n2"]) @ lw["gu"].T
        g, u = gu.chunk(2, dim=-1)
        return x + (F.silu(g) * u) @ lw["down"].T

    def prefill(self, ids):
        """ids [1, T] -> logits of the last token [1, V]."""
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        m, hd = self.m, self.hd
        T = ids.shape[1]
        cos, sin = self.angles(torch.arange(T, device=self.dev))
        x = self.emb[ids]
        for lw in self.layers:
            q, k, v = (_rms(x, lw["n1"]) @ lw["qkv"].T).split([m["h"] * hd, m["kv"] * hd, m["kv"] * hd], dim=-1)
            q = _rope(q.view(1, T, m["h"], hd), cos, sin).transpose(1, 2)
            k = _rope(k.view(1, T, m["kv"], hd), cos, sin).transpose(1, 2)
            v = v.view(1, T, m["kv"], hd).transpose(1, 2)
            # never the math kernel (it would build the T x T matrix); GQA by repeating k / v
            # (a few hundred MB at 32k, small beside the layer's compute)
            rep = m["h"] // m["kv"]
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                              SDPBackend.EFFICIENT_ATTENTION]):
                o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + o.transpose(1, 2).reshape(1, T, m["h"] * hd) @ lw["o"].T
            x = self._mlp(x, lw)
        return _rms(x[:, -1], self.nf) @ self.lm.T

    def decode_step(self, ids, kc, vc, pos):
        """ids [B]; kc / vc: per layer [B, kv, cap, hd]; the new entry goes to index pos, attention
        reads [0, pos]. Returns the next ids [B] (greedy)."""
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        m, hd = self.m, self.hd
        B, grp = ids.shape[0], m["h"] // m["kv"]
        cos, sin = self.angles(torch.full((1,), pos, device=self.dev))
        x = self.emb[ids][:, None, :]  # [B, 1, d]
        for li, lw in enumerate(self.layers):
            q, k, v = (_rms(x, lw["n1"]) @ lw["qkv"].T).split([m["h"] * hd, m["kv"] * hd, m["kv"] * hd], dim=-1)
            q = _rope(q.view(B, 1, m["h"], hd), cos, sin)
            k = _rope(k.view(B, 1, m["kv"], hd), cos, sin)
            kc[li][:, :, pos] = k[:, 0]
            vc[li][:, :, pos] = v.view(B, m["kv"], hd)
            qg = q.view(B, m["kv"], grp, hd)  # a kv head's query group as the query length
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                              SDPBackend.EFFICIENT_ATTENTION]):
                o = F.scaled_dot_product_attention(qg, kc[li][:, :, :pos + 1], vc[li][:, :, :pos + 1])
            x = x + o.reshape(B, 1, m["h"] * hd) @ lw["o"].T
            x = self._mlp(x, lw)
        return (_rms(x[:, 0], self.nf) @ self.lm.T).argmax(-1)


def _timed(fn, n):
    """Seconds of n calls of fn, between CUDA events (after the calls already made)."""
    import torch
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(n):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / 1e3


def run_all(args):
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(args.device)
    torch.cuda.set_device(dev)
    p = torch.cuda.get_device_properties(dev)
    env = dict(torch=torch.__version__, cuda=torch.version.cuda, device=p.name, sms=p.multi_processor_count,
               memory_gib=round(p.total_memory / 2**30, 1), compile=False, cuda_graphs=False, dtype="bfloat16")
    t_start, rows = time.time(), []

    def over():
        return time.time() - t_start > args.time_limit

    for name in args.models:
        m = dict(MODELS[name])
        model = Llama(m, args.layers, dev)
        m["L"] = model.L  # FLOPs and bytes of the layers that ran
        for T in args.prefill:
            r = dict(impl="torch", model=name, test="prefill", tokens=T, batch=1)
            if over():
                rows.append(dict(r, error="skipped: time limit"))
                continue
            try:
                ids = torch.randint(0, m["V"], (1, T), device=dev)
                with torch.inference_mode():
                    model.prefill(ids)  # warm-up
                    sec = min(_timed(lambda: model.prefill(ids), 1) for _ in range(args.reps))
                fl = flops_prefill(m, T)
                rows.append(dict(r, seconds=sec, tokens_per_s=T / sec, flops=fl, tflops=fl / sec / 1e12,
                                 mfu=fl / sec / 1e12 / args.peak_tflops))
            except RuntimeError as e:  # out of memory, no attention kernel for the shape, ...
                rows.append(dict(r, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
            torch.cuda.empty_cache()
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        rows += _decode_rows(args, name, m, model, dev, over)
        del model
        torch.cuda.empty_cache()
    return rows, env


def _decode_rows(args, name, m, model, dev, over):
    import torch
    rows = []
    hd, bmax = m["d"] // m["h"], max(args.batches)
    cap = max(1, int(args.context * max(args.budgets))) + args.steps + 4
    try:  # one cache for the largest batch and budget; smaller ones use its leading part
        kc = [torch.empty(bmax, m["kv"], cap, hd, device=dev, dtype=torch.bfloat16).normal_() for _ in range(model.L)]
        vc = [torch.empty(bmax, m["kv"], cap, hd, device=dev, dtype=torch.bfloat16).normal_() for _ in range(model.L)]
    except RuntimeError as e:
        return [dict(impl="torch", model=name, test="decode", error=f"the cache: {str(e).splitlines()[0][:300]}")]
    for b in args.budgets:
        kv_len = max(1, int(args.context * b))
        for B in args.batches:
            r = dict(impl="torch", model=name, test="decode", batch=B, budget=b, kv_len=kv_len)
            if over():
                rows.append(dict(r, error="skipped: time limit"))
                continue
            ids = torch.randint(0, m["V"], (B,), device=dev)
            ks, vs = [t[:B] for t in kc], [t[:B] for t in vc]
            state = dict(ids=ids, pos=kv_len)

            def step():
                state["ids"] = model.decode_step(state["ids"], ks, vs, state["pos"])
                state["pos"] += 1

            try:
                with torch.inference_mode():
                    for _ in range(2):
                        step()
                    state["pos"] = kv_len  # the timed steps start again at kv_len
                    sec = _timed(step, args.steps) / args.steps
            except RuntimeError as e:
                rows.append(dict(r, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"))
                continue
            by = bytes_decode(m, B, kv_len + args.steps // 2)
            rows.append(dict(r, seconds=sec, tokens_per_s=B / sec, bytes=by, hbm_tbs=by / sec / 1e12,
                             hbm_frac=by / sec / 1e12 / args.peak_tbs))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    del kc, vc
    return rows


if __name__ == "__main__":
    sys.exit(main())
