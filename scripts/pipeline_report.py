#!/usr/bin/env python3
"""Tables for docs/results/pipeline/README.md from scripts/bench_pipeline.sh's files."""
import csv, os, re, sys

out = sys.argv[1]

def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

def mean(v):
    return sum(v) / len(v) if v else float("nan")

def wall(log):
    m = re.search(r"answered .* in ([0-9.]+) s", open(log).read())
    return float(m.group(1)) if m else float("nan")

print("# Pipeline measurements\n")
print("Made by `scripts/bench_pipeline.sh` on this machine (2 cores, no GPU, CPU workers over POSIX")
print("shared memory). Every ratio is against a baseline measured in the same run.\n")
print("## 1. The same requests in process and through the pipeline\n")
print("passkey, snapkv at budget 0.25, 12 answer tokens, agnostic protocol. In process: `tis eval --batch 1`,")
print("a request's time = its prefill + compression + decode (row timings). Pipeline: `tis serve --prefill 1")
print("--decode 1`, `tis client`, a request's time as the client saw it.\n")
print("| context | requests | in process: s / request | pipeline, one at a time: s / request | ratio | pipeline, all at once: wall s / request | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for length in (1024, 4096):
    p = os.path.join(out, f"inproc_{length}.csv")
    if not os.path.exists(p):
        continue
    r = [x for x in rows(p) if x["policy"] == "snapkv" and x["protocol"] == "agnostic"]
    inproc = mean([float(x["prefill_s"]) + float(x["compress_s"]) + float(x["decode_s"]) for x in r])
    c1 = rows(os.path.join(out, f"pipe_{length}_c1.csv"))
    one = mean([float(x["client_s"]) for x in c1])
    n = len(c1)
    alln = wall(os.path.join(out, f"pipe_{length}_c{n}.log")) / n
    print(f"| {length} | {n} | {inproc:.2f} | {one:.2f} | {one / inproc:.2f}x | {alln:.2f} | {alln / inproc:.2f}x |")
print()
print("## 2. Hand-off time against the compressed cache's size\n")
print("The decode worker maps the prefill worker's shared-memory arena (once) and copies the block into a")
print("cache with room for the question and answer; on CPU that copy is the hand-off, so it grows with the")
print("bytes (a CUDA IPC handle would not copy; not built yet).\n")
print("| context | budget | KV at decode start (MiB) | hand-off (ms), mean | MiB/s | KV share of full |")
print("|---:|---:|---:|---:|---:|---:|")
for length in (1024, 4096):
    for b in ("1", "0.25", "0.1"):
        p = os.path.join(out, f"handoff_{length}_{b}.csv")
        if not os.path.exists(p):
            continue
        r = [x for x in rows(p) if x["status"] == "ok"]
        kv = mean([int(x["kv_bytes"]) for x in r]) / 2**20
        full = mean([int(x["full_kv_bytes"]) for x in r]) / 2**20
        ho = mean([float(x["handoff_s"]) for x in r]) * 1e3
        print(f"| {length} | {b} | {kv:.2f} | {ho:.2f} | {kv / (ho / 1e3):.0f} | {kv / full:.2f} |")
print()
print("## 3. Batched decode from compressed caches under a KV memory cap\n")
print("`tis bench --context 1024 --budgets 1 0.25 0.1 --kv_cap_mb 64 -n 32 -r 2` (the decode worker's")
print("batched step, `forward_run_batch`, in one process):\n")
print("```")
print(open(os.path.join(out, "decode_kvcap_1k.txt")).read().rstrip())
print("```")
