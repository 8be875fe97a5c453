#!/usr/bin/env python3
"""Accuracy tables from the per-sample CSVs `tis eval` writes: one table per
benchmark x context length x protocol, policies x budgets, with the
measured compression ratio (full KV bytes / kept KV bytes), as Markdown.

Usage: scripts/results_tables.py docs/results/passkey_1k_2k.csv [...]"""
import csv
import sys
from collections import defaultdict

BUDGETS = ["0.01", "0.02", "0.05", "0.1", "0.25", "0.5"]


def label(b):
    return f"{float(b):g}"


def tables(path):
    rows = list(csv.DictReader(open(path, newline="")))
    acc = defaultdict(list)
    kv = defaultdict(lambda: [0, 0])
    order, cells = [], []
    for r in rows:
        cell = (r["benchmark"], int(r["target_tokens"]), r["protocol"])
        if cell not in cells:
            cells.append(cell)
        b = "1" if r["policy"] == "full" else label(r["budget"])
        acc[cell + (r["policy"], b)].append(int(r["correct"]))
        k = kv[(cell[0], cell[1], b)]
        k[0] += int(r["full_kv_bytes"])
        k[1] += int(r["kv_bytes"])
        if r["policy"] != "full" and r["policy"] not in order:
            order.append(r["policy"])
    # tis eval's policy order (tis eval --list); others (adakv:INNER, +hook) as they come
    known = ["random", "streaming", "knorm", "h2o", "h2o_acc", "snapkv", "tova", "pyramidkv", "adakv",
             "oracle", "tis", "tis_query"]
    first = {p: k for k, p in enumerate(order)}
    order.sort(key=lambda p: (known.index(p) if p in known else len(known), first[p]))
    out = []
    for cell in cells:
        full = acc.get(cell + ("full", "1"), [])
        if not full:
            continue
        mean = lambda v: sum(v) / len(v)
        out.append(f"\n**{cell[0]}, {cell[1]} tokens, {cell[2].replace('_', '-')}** "
                   f"(full: {mean(full):.2f}, n = {len(full)} per cell)\n")
        out.append("| policy | " + " | ".join(BUDGETS) + " |")
        out.append("|---|" + "---:|" * len(BUDGETS))
        for p in order:
            vals = [acc.get(cell + (p, label(x))) for x in BUDGETS]
            out.append(f"| {p} | " + " | ".join(f"{mean(v):.2f}" if v else "–" for v in vals) + " |")
        ratios = []
        for x in BUDGETS:
            f, k = kv.get((cell[0], cell[1], label(x)), (0, 0))
            ratios.append(f"{f / k:.1f}x" if k else "–")
        out.append("| *compression (measured)* | " + " | ".join(ratios) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"\n### {p.split('/')[-1]}")
        print(tables(p))
