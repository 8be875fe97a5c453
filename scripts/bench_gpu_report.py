#!/usr/bin/env python3
"""bench_gpu_report: the table of scripts/bench_gpu.sh, from the folder it wrote.

Reads RESULTS/models.csv, the `tis bench` logs (tis_<model>_pp<T>.log, tis_<model>_decode.log),
torch_<model>.json (scripts/bench_torch.py) and ipc.csv (tests/test_cuda_ipc_bench.c), and
writes RESULTS/results.csv (one row per measured configuration, tis and torch) and
RESULTS/results.md (side by side with the ratio tis / PyTorch of tokens/s, prefill MFU and
decode HBM fraction for both, the IPC hand-off per block size, and every step's status).

tis's derived figures use the formulas of bench_torch.py (flops_prefill, bytes_decode) with
tis's own weight bytes: --tis_wtype per parameter (the file's type: Q4_1 20 bytes per 32, bf16
2; or how the device holds them, e.g. f32: 4) over every matrix and the lm_head, and --tis_kv
bytes per KV element (f32 on the device today: the CUDA attention reads f32 caches only). A configuration that did not run shows its step's status, never a number.
"""
import argparse
import csv
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import MODELS, PEAK_BF16_TFLOPS, PEAK_HBM_TBS, bytes_decode, flops_prefill, matmul_params  # noqa: E402

BYTES_PER_PARAM = {"q4_1": 20 / 32, "q8_0": 34 / 32, "bf16": 2.0, "f16": 2.0, "f32": 4.0}


def read_models(res):
    path = os.path.join(res, "models.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["key"]: r for r in csv.DictReader(f)}


def parse_prefill(text):
    """'| pp2048   |       1234.5 |   1234.5 +- 3.1 |' -> (2048, 1234.5)"""
    m = re.search(r"^\|\s*pp(\d+)\s*\|\s*([0-9.]+)\s*\|", text, re.M)
    return (int(m.group(1)), float(m.group(2))) if m else None


def parse_decode(text):
    """Rows '| budget | KV/request | fit | batch | tokens/s | per request/s | x |' -> dicts."""
    rows = []
    for line in text.splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) >= 5 and re.fullmatch(r"[0-9.]+", c[0] or "x") and c[3].isdigit():
            try:
                rows.append(dict(budget=float(c[0]), batch=int(c[3]), tokens_per_s=float(c[4])))
            except ValueError:
                pass
    return rows


def step_status(res):
    st = {}
    path = os.path.join(res, "steps.csv")
    if os.path.exists(path):
        with open(path) as f:
            for r in csv.DictReader(f):
                st[r["step"]] = r["status"]
    return st


def shapes(model_row):
    m = dict(MODELS[model_row["preset"]])
    m["L"] = int(model_row["layers"])
    return m


def tis_rows(res, models, status, args):
    rows = []
    for key, mr in models.items():
        m = shapes(mr)
        wt = mr["wtype"] if args.tis_wtype == "file" else args.tis_wtype
        wbytes = BYTES_PER_PARAM.get(wt, 2.0) * (matmul_params(m) + m["V"] * m["d"])
        for name in sorted(os.listdir(res)):
            mm = re.fullmatch(rf"tis_{key}_pp(\d+)\.log", name)
            if not mm:
                continue
            T = int(mm.group(1))
            r = dict(impl="tis", model=mr["preset"], layers=m["L"], test="prefill", tokens=T, batch=1)
            p = parse_prefill(open(os.path.join(res, name), errors="replace").read())
            if p:
                fl = flops_prefill(m, T)
                r.update(tokens_per_s=p[1], tflops=fl * p[1] / T / 1e12, mfu=fl * p[1] / T / 1e12 / args.peak_tflops)
            else:
                r["error"] = status.get(name[:-4], "no result in the log")
            rows.append(r)
        dlog = os.path.join(res, f"tis_{key}_decode.log")
        if os.path.exists(dlog):
            got = parse_decode(open(dlog, errors="replace").read())
            if not got:
                rows.append(dict(impl="tis", model=mr["preset"], layers=m["L"], test="decode",
                                 error=status.get(f"tis_{key}_decode", "no result in the log")))
            for d in got:
                if d["batch"] not in args.batches:
                    continue
                kv_len = max(1, int(args.context * d["budget"]))
                by = bytes_decode(m, d["batch"], kv_len + args.decode_steps // 2, weight_bytes=wbytes,
                                  kv_elem_bytes=BYTES_PER_PARAM[args.tis_kv])
                sec = d["batch"] / d["tokens_per_s"]
                rows.append(dict(impl="tis", model=mr["preset"], layers=m["L"], test="decode", batch=d["batch"],
                                 budget=d["budget"], kv_len=kv_len, tokens_per_s=d["tokens_per_s"],
                                 hbm_tbs=by / sec / 1e12, hbm_frac=by / sec / 1e12 / args.peak_tbs))
    return rows


def torch_rows(res, models):
    rows = []
    for name in sorted(os.listdir(res)):
        if name.startswith("torch_") and name.endswith(".json"):
            data = json.load(open(os.path.join(res, name)))
            layers = {mr["preset"]: int(mr["layers"]) for mr in models.values()}
            for r in data.get("rows", []):
                rows.append(dict(r, layers=layers.get(r["model"], "")))
    return rows


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "-"


def key_of(r):
    return (r["model"], r["test"], r.get("tokens") if r["test"] == "prefill" else None,
            r.get("batch") if r["test"] == "decode" else None, r.get("budget"))


def write_md(res, rows, status, args):
    tis = {key_of(r): r for r in rows if r["impl"] == "tis" and "error" not in r}
    tor = {key_of(r): r for r in rows if r["impl"] == "torch" and "error" not in r}
    keys = sorted(set(tis) | set(tor), key=lambda k: (k[0], k[1], k[2] or 0, k[3] or 0, -(k[4] or 0)))
    out = [f"# {args.title}", "",
           f"Peaks: {args.peak_tflops} TFLOP/s bf16 dense, {args.peak_tbs} TB/s HBM (H200 SXM datasheet; "
           "scripts/bench_torch.py). MFU: prefill FLOPs / s / peak; HBM: decode bytes per step / s / peak "
           "(every matrix + lm_head once, K and V read once). tis's weights counted as "
           + ("the file's type" if args.tis_wtype == "file" else f"{args.tis_wtype} (how the device holds them)")
           + f", its KV as {args.tis_kv}; PyTorch's weights and KV as bf16. PyTorch: eager, random bf16 weights, "
           "flash SDPA.",
           "", "| model | layers | test | T / batch | budget | tis tok/s | torch tok/s | tis / torch | tis MFU | torch MFU "
           "| tis HBM | torch HBM |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in keys:
        a, b = tis.get(k, {}), tor.get(k, {})
        ratio = a["tokens_per_s"] / b["tokens_per_s"] if a.get("tokens_per_s") and b.get("tokens_per_s") else None
        lay = a.get("layers") or b.get("layers") or ""
        tb = k[2] if k[1] == "prefill" else k[3]
        out.append(f"| {k[0]} | {lay} | {k[1]} | {tb} | {fmt(k[4], 'g')} | {fmt(a.get('tokens_per_s'), '.1f')} | "
                   f"{fmt(b.get('tokens_per_s'), '.1f')} | {fmt(ratio, '.2f')} | {fmt(a.get('mfu'), '.1%')} | "
                   f"{fmt(b.get('mfu'), '.1%')} | {fmt(a.get('hbm_frac'), '.1%')} | {fmt(b.get('hbm_frac'), '.1%')} |")
    if not keys:
        out.append("| (nothing measured) | | | | | | | | | | | |")
    errs = [r for r in rows if "error" in r]
    if errs:
        out += ["", "Configurations without a number:", ""]
        out += [f"- {r['impl']} {r['model']} {r['test']} {r.get('tokens') or r.get('batch') or ''}: {r['error']}"
                for r in errs]
    ipc = os.path.join(res, "ipc.csv")
    out += ["", "## CUDA IPC hand-off vs block size", ""]
    if os.path.exists(ipc) and os.path.getsize(ipc) > 0:
        out += ["| block bytes | hand-off p50 (us) | p90 (us) | copy p50 (us) | copy GB/s | pool open (ms, once) |",
                "|---|---|---|---|---|---|"]
        for r in csv.DictReader(open(ipc)):
            out.append(f"| {r['block_bytes']} | {r['handoff_us_p50']} | {r['handoff_us_p90']} | {r['copy_us_p50']} "
                       f"| {r['copy_gbs']} | {r['open_ms']} |")
    else:
        out.append(f"not measured: {status.get('ipc', 'the step did not run')}")
    out += ["", "## Steps", "", "| step | status |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in status.items()]
    with open(os.path.join(res, "results.md"), "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description="the table of scripts/bench_gpu.sh")
    ap.add_argument("results")
    ap.add_argument("--batches", default="1,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--context", type=int, default=0, help="decode context (default: from the logs, else 8192)")
    ap.add_argument("--decode_steps", type=int, default=16)
    ap.add_argument("--title", default="tis vs PyTorch on the GPU")
    ap.add_argument("--tis_kv", default="f16", choices=["f16", "bf16", "f32"], help="tis's KV cache type")
    ap.add_argument("--tis_wtype", default="file", choices=["file"] + sorted(BYTES_PER_PARAM),
                    help="weight bytes of tis's decode rows: the file's type, or how the device holds them")
    ap.add_argument("--peak_tflops", type=float, default=PEAK_BF16_TFLOPS)
    ap.add_argument("--peak_tbs", type=float, default=PEAK_HBM_TBS)
    args = ap.parse_args()
    res = args.results
    if not args.context:
        args.context = 8192
        for name in os.listdir(res):
            if name.endswith("_decode.log"):
                m = re.search(r"context (\d+) tokens", open(os.path.join(res, name), errors="replace").read())
                if m:
                    args.context = int(m.group(1))
    models, status = read_models(res), step_status(res)
    rows = tis_rows(res, models, status, args) + torch_rows(res, models)
    keys = ["impl", "model", "layers", "test", "tokens", "batch", "budget", "kv_len", "tokens_per_s", "tflops", "mfu",
            "hbm_tbs", "hbm_frac", "error"]
    with open(os.path.join(res, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    write_md(res, rows, status, args)
    n_ok = sum(1 for r in rows if "error" not in r)
    print(f"bench_gpu_report: {n_ok} measured rows, {len(rows) - n_ok} without a number -> {res}/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
