#!/usr/bin/env python3
"""The table of docs/results/ert: accuracy per benchmark and budget of the
starting (regression) head and the end-to-end fine-tuned one, beside full,
streaming and snapkv, from the CSVs scripts/ert_heldout.sh writes
(regression_LEN_BENCH.csv, ert_LEN_BENCH.csv; any other PREFIX_LEN_BENCH.csv
is another fine-tuned head, shown as its own column).

Usage: scripts/ert_summary.py docs/results/ert"""
import csv
import glob
import os
import sys
from collections import defaultdict

d = sys.argv[1] if len(sys.argv) > 1 else "docs/results/ert"
acc = defaultdict(list)
cells = []
heads = []
for path in sorted(glob.glob(os.path.join(d, "*_*_*.csv"))):
    which = os.path.basename(path).split("_")[0]
    if not os.path.basename(path).split("_")[1].isdigit():
        continue
    if which != "regression" and which not in heads:
        heads.append(which)
    for r in csv.DictReader(open(path, newline="", encoding="utf-8", errors="replace")):
        cell = (r["benchmark"], int(r["target_tokens"]))
        if cell not in cells:
            cells.append(cell)
        pol = r["policy"]
        if pol == "tis" and which != "regression":
            pol = "tis_" + which
        b = "1" if pol == "full" else f"{float(r['budget']):g}"
        acc[(cell, pol, b)].append(float(r["correct"]))

def cell(c, p, b):
    v = acc.get((c, p, b))
    return f"{sum(v) / len(v):.2f} ({len(v)})" if v else "-"

heads.sort(key=lambda h: (h != "ert", h))
print("| benchmark | tokens | full | streaming 2 % / 10 % | snapkv 2 % / 10 % | tis (regression) 2 % / 10 % | "
      + " | ".join(f"tis ({h}) 2 % / 10 %" for h in heads) + " |")
print("|---|---:|---|---|---|---|" + "---|" * len(heads))
for c in sorted(cells):
    row = [c[0], str(c[1]), cell(c, "full", "1")]
    for p in ["streaming", "snapkv", "tis"] + ["tis_" + h for h in heads]:
        row.append(cell(c, p, "0.02") + " / " + cell(c, p, "0.1"))
    print("| " + " | ".join(row) + " |")
