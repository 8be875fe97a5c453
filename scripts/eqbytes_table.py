#!/usr/bin/env python3
"""Accuracy against the KV bytes kept: runs with a smaller cache type
(tis eval --kv_type) next to the f16 cell of the same samples.

Usage: scripts/eqbytes_table.py F16.csv SMALL.csv [SMALL2.csv ...]

F16.csv is a cell of the main table (f16 cache, budgets by tokens);
each SMALL.csv a run of the same benchmark, length, samples and seed with
another --kv_type and budgets scaled so that the bytes match. For every
policy and budget of SMALL.csv: the measured KV bytes (mean over samples,
every stream, the question's entries included, as `kv_bytes` in the CSV)
as a share of the f16 `full` cache's, the right answers, the accuracy and
the retention against f16 `full` (the uncompressed cache of F16.csv).
The same policy's f16 rows by tokens follow where F16.csv has them.
Threshold rows are left out. Markdown on stdout."""
import csv
import json
import os
import shlex
import sys
from collections import defaultdict


def load(path):
    rows = [r for r in csv.DictReader(open(path, newline="", encoding="utf-8", errors="replace"))
            if r.get("threshold", "") in ("", "-1") or float(r["threshold"]) <= 0]
    if not rows:
        sys.exit(f"eqbytes_table: {path}: no budget rows")
    return rows


def cell_of(rows, path):
    cells = {(r["benchmark"], r["target_tokens"], r["protocol"]) for r in rows}
    if len(cells) != 1:
        sys.exit(f"eqbytes_table: {path}: more than one cell ({sorted(cells)})")
    return cells.pop()


def cache_of(path, rows):
    """The cache type of the rows: their kv_type column; rows from before
    it (empty, e.g. a cell that gained rows later) take the --kv_type of
    the run in the .json tis eval writes beside the CSV."""
    kinds = {r.get("kv_type") or "" for r in rows}
    if "" in kinds:
        kinds.discard("")
        kinds.add(recorded_cache(path))
    if len(kinds) > 1:
        sys.exit(f"eqbytes_table: {path}: rows of more than one cache ({', '.join(sorted(kinds))})")
    return kinds.pop()


def recorded_cache(path):
    """The --kv_type of the command in the .json beside path (f16 when it
    has none); the file's name when there is no such .json."""
    meta = os.path.splitext(path)[0] + ".json"
    try:
        argv = shlex.split(json.load(open(meta))["meta"]["command"])
    except (OSError, ValueError, KeyError):
        return os.path.basename(path)
    return argv[argv.index("--kv_type") + 1] if "--kv_type" in argv[:-1] else "f16"


def groups(rows):
    g = defaultdict(list)
    for r in rows:
        b = "full" if r["policy"] == "full" else f"{float(r['budget']):g}"
        g[(r["policy"], b)].append(r)
    return g


def md(text):
    """A Markdown table cell: '|' escaped (a union's name holds one)."""
    return text.replace("|", "\\|")


def row(pol, cache, b, rs, full_bytes, full_acc):
    """One Markdown line: rows rs of policy pol at budget b in this cache."""
    share = sum(float(r["kv_bytes"]) for r in rs) / len(rs) / full_bytes
    right = sum(int(r["correct"]) for r in rs)
    a = right / len(rs)
    ret = f"{100 * a / full_acc:.0f} %" if full_acc > 0 else "-"
    return f"| {md(pol)} | {cache} | {b} | {100 * share:.1f} % | {right}/{len(rs)} | {a:.2f} | {ret} |"


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    f16 = load(sys.argv[1])
    cell = cell_of(f16, sys.argv[1])
    if cache_of(sys.argv[1], f16) != "f16":
        sys.exit(f"eqbytes_table: {sys.argv[1]}: not an f16 cell ({cache_of(sys.argv[1], f16)})")
    g16 = groups(f16)
    full = g16.get(("full", "full"))
    if not full:
        sys.exit(f"eqbytes_table: {sys.argv[1]}: no full rows")
    full_bytes = sum(float(r["kv_bytes"]) for r in full) / len(full)
    full_acc = sum(int(r["correct"]) for r in full) / len(full)
    ids16 = {r["sample_id"] for r in full}
    print(f"{cell[0]}, {cell[1]} tokens, {cell[2]}: f16 full {full_acc:.2f} "
          f"({sum(int(r['correct']) for r in full)}/{len(full)}), {full_bytes / 1e6:.2f} MB\n")
    print("| policy | cache | budget | KV bytes (% of f16 full) | right | accuracy | retention |")
    print("|---|---|---:|---:|---:|---:|---:|")
    shown16 = set()
    for path in sys.argv[2:]:
        rows = load(path)
        if cell_of(rows, path) != cell:
            sys.exit(f"eqbytes_table: {path}: another cell than {sys.argv[1]}")
        if not {r["sample_id"] for r in rows} <= ids16:
            sys.exit(f"eqbytes_table: {path}: samples the f16 cell does not have")
        cache = cache_of(path, rows)
        g = groups(rows)
        for pol in sorted({k[0] for k in g}, key=lambda p: (p != "full", p)):
            budgets = sorted({k[1] for k in g if k[0] == pol}, key=lambda b: 2.0 if b == "full" else float(b))
            for b in budgets:
                print(row(pol, cache, b, g[(pol, b)], full_bytes, full_acc))
            if pol in shown16:
                continue
            shown16.add(pol)
            for b in sorted({k[1] for k in g16 if k[0] == pol and k[1] != "full"}, key=float):
                print(row(pol, "f16 (by tokens)", b, g16[(pol, b)], full_bytes, full_acc))


if __name__ == "__main__":
    main()
