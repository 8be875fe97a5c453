#!/usr/bin/env python3
"""Headline table of the held-out evaluation: per benchmark x length x
protocol and budget, the learned heads against the best baseline and the
oracle (accuracy, n per cell), from the per-sample CSVs `tis eval` wrote.

Usage: scripts/heldout_summary.py docs/results/heldout/apache_phrasing1_*.csv"""
import csv
import sys
from collections import defaultdict

BUDGETS = ["0.01", "0.02", "0.05", "0.1", "0.25", "0.5"]
AGNOSTIC = ["random", "streaming", "knorm", "h2o", "h2o_acc", "snapkv", "tova", "pyramidkv", "adakv"]


def label(b):
    return f"{float(b):g}"


acc = defaultdict(list)
cells = []
for path in sys.argv[1:]:
    for r in csv.DictReader(open(path, newline="", encoding="latin-1")):
        cell = (r["benchmark"], int(r["target_tokens"]), r["protocol"])
        if cell not in cells:
            cells.append(cell)
        b = "1" if r["policy"] == "full" else label(r["budget"])
        acc[cell + (r["policy"], b)].append(int(r["correct"]))


def mean(v):
    return sum(v) / len(v) if v else None


def fmt(x):
    return "–" if x is None else f"{x:.2f}"


order = {"passkey": 0, "niah": 1, "niah_multikey": 2, "litm_kv": 3, "litm_qa": 4}
cells.sort(key=lambda c: (order.get(c[0], 9), c[1], c[2] != "agnostic"))
print("| benchmark | tokens | protocol | full | budget | tis | tis_query | best baseline | oracle |")
print("|---|---:|---|---:|---:|---:|---:|---|---:|")
for cell in cells:
    full = mean(acc[cell + ("full", "1")])
    for b in ("0.02", "0.05", "0.1"):
        base = [(mean(acc[cell + (p, b)]), p) for p in AGNOSTIC if acc[cell + (p, b)]]
        best = max(base) if base else (None, "")
        if base:  # name every baseline at the best accuracy, not an arbitrary one of them
            ties = sorted(p for a, p in base if a == best[0])
            best = (best[0], ties[0] if len(ties) == 1 else "all" if len(ties) == len(base)
                    else ", ".join(ties) if len(ties) <= 3 else f"{len(ties)} tied")
        n = len(acc[cell + ("tis", b)])
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {fmt(full)} | {b} | {fmt(mean(acc[cell + ('tis', b)]))} | "
              f"{fmt(mean(acc[cell + ('tis_query', b)]))} | {fmt(best[0])} ({best[1]}) | "
              f"{fmt(mean(acc[cell + ('oracle', b)]))} |")
