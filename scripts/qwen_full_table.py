#!/usr/bin/env python3
"""The table of docs/results/qwen_full/README.md from its CSVs: `full`
accuracy per benchmark x length (correct / samples), mean seconds of
prefill and of the whole sample, how many answers reached --max_new
(n_generated == 48), and SmolLM2's `full` on the same sample ids where
docs/results/heldout has them (the same data settings and seed).
Usage: scripts/qwen_full_table.py [DIR [HELDOUT_DIR]]"""
import csv
import glob
import os
import re
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "docs/results/qwen_full"
hd = sys.argv[2] if len(sys.argv) > 2 else "docs/results/heldout"
smol = {}  # sample id -> correct, SmolLM2 full (agnostic rows of the held-out CSVs)
for path in glob.glob(os.path.join(hd, "apache_phrasing1_*.csv")):
    for r in csv.DictReader(open(path)):
        if r["policy"] == "full" and r["protocol"] == "agnostic":
            smol[r["sample_id"]] = int(r["correct"])
cells = {}
for path in sorted(glob.glob(os.path.join(d, "qwen_full_*_*.csv"))):
    m = re.match(r"qwen_full_(\d+)_(.+)\.csv$", os.path.basename(path))
    rows = [r for r in csv.DictReader(open(path)) if r["policy"] == "full"]
    if rows:
        cells[(m.group(2), int(m.group(1)))] = rows
benches = ["passkey", "niah", "niah_multikey", "litm_kv", "litm_qa"]
lengths = sorted({n for _, n in cells})
print("| benchmark | " + " | ".join("%d tokens" % n for n in lengths) + " |")
print("|---|" + "---:|" * len(lengths))
for b in benches:
    out = []
    for n in lengths:
        rows = cells.get((b, n))
        if not rows:
            out.append("–")
            continue
        c = sum(int(r["correct"]) for r in rows)
        out.append("%.2f (%d/%d)" % (c / len(rows), c, len(rows)))
    print("| %s | %s |" % (b, " | ".join(out)))
print()
print("| benchmark | tokens | samples | prefill s/sample | total s/sample | answers at the 48-token cap "
      "| SmolLM2 full, same samples |")
print("|---|---:|---:|---:|---:|---:|---:|")
for b in benches:
    for n in lengths:
        rows = cells.get((b, n))
        if not rows:
            continue
        k = len(rows)
        pre = sum(float(r["prefill_s"]) for r in rows) / k
        tot = sum(float(r["prefill_s"]) + float(r["decode_s"]) for r in rows) / k
        cap = sum(int(r["n_generated"]) >= 48 for r in rows)
        sm = [smol[r["sample_id"]] for r in rows if r["sample_id"] in smol]
        sms = "%.2f (%d/%d)" % (sum(sm) / len(sm), sum(sm), len(sm)) if sm else "–"
        print("| %s | %d | %d | %.0f | %.0f | %d | %s |" % (b, n, k, pre, tot, cap, sms))
