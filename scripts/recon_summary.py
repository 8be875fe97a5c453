#!/usr/bin/env python3
"""Headline tables of the reconstruction study (docs/results/recon/): per
benchmark x length x protocol and budget, `full`, the reconstruction oracle
(kvzip), the learned per-head heads (tis, the default head, with a span
or a cap as tis+SUFFIX, and every other head's rows: tis_NAME, as tis
eval --head_as names them), the answer
oracle and the best
query-agnostic baseline, with retention = accuracy / full's accuracy in the
same cell; then the threshold runs: the fraction of the context kept
(measured, mean over samples) and the accuracy.

Usage: scripts/recon_summary.py [--heads P,Q,...] [--compact] docs/results/recon/*.csv
--heads: the learned columns to show, in that order (policy names as in
the CSVs, e.g. tis,tis+lpool5+recent64/8,tis_si+lpool5|tis+lpool5+recent64/8);
by default every head in the files.
--compact: one row per cell instead, each column the accuracies at the five
budgets (1 / 2 / 5 / 10 / 25 %), the best baseline's the best at each
budget; no threshold or cost tables."""
import csv
import sys
from collections import defaultdict

BUDGETS = ["0.01", "0.02", "0.05", "0.1", "0.25"]
BASELINES = ["random", "streaming", "knorm", "h2o", "h2o_acc", "snapkv", "tova", "pyramidkv", "adakv"]

if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
    print(__doc__)
    sys.exit(0)
pick, compact = None, False
while len(sys.argv) > 1 and sys.argv[1] in ("--heads", "--compact"):
    if sys.argv[1] == "--compact":
        compact = True
        del sys.argv[1]
        continue
    if len(sys.argv) < 4:
        sys.exit("recon_summary: --heads P,Q,... then the CSVs")
    pick = [p for p in sys.argv[2].split(",") if p]
    del sys.argv[1:3]
if len(sys.argv) < 2:
    sys.exit("recon_summary: no CSV given")

acc = defaultdict(list)
kept = defaultdict(list)
cells = []
policies_seen = set()
run_from = {}  # (cell, policy, budget, sample) -> the file whose row counts
twice = defaultdict(int)  # (file, file read first) -> rows skipped
for path in sys.argv[1:]:
    for r in csv.DictReader(open(path, newline="", encoding="utf-8", errors="replace")):
        cell = (r["benchmark"], int(r["target_tokens"]), r["protocol"])
        thr = r.get("threshold", "")
        if thr not in ("", "-1") and float(thr) > 0:
            b = "t" + f"{float(thr):g}"
        else:
            b = "1" if r["policy"] == "full" else f"{float(r['budget']):g}"
        run = cell + (r["policy"], b, r["sample_id"])
        if run in run_from:  # the same sample in two files (a cell rerun): counted once
            twice[(path, run_from[run])] += 1
            continue
        run_from[run] = path
        if cell not in cells:
            cells.append(cell)
        acc[cell + (r["policy"], b)].append(int(r["correct"]))
        kept[cell + (r["policy"], b)].append(int(r["kept_tokens"]) / max(1, int(r["context_tokens"])))
        policies_seen.add(r["policy"])

for (path, first), n in twice.items():
    print(f"recon_summary: {n} rows of {path} skipped: the same samples, policies and budgets are read "
          f"from {first}", file=sys.stderr)


def mean(v):
    return sum(v) / len(v) if v else None


def md(name):
    """A policy name in a Markdown table cell: a union's '|' escaped."""
    return name.replace("|", "\\|")


def fmt(x, full=None):
    if x is None:
        return "–"
    if full:
        return f"{x:.2f} ({100 * x / full:.0f}%)"
    return f"{x:.2f}"


order = {"passkey": 0, "niah": 1, "niah_multikey": 2, "litm_kv": 3, "litm_qa": 4}
cells.sort(key=lambda c: (order.get(c[0], 9), c[1], c[2] != "agnostic"))
# the learned heads: tis, tis with a span or a cap (tis+lpool5, ...), then
# the named ones (tis_NAME, sorted); not the query-aware tis_query
heads = ["tis"] * ("tis" in policies_seen) + sorted(p for p in policies_seen if p.startswith("tis+")) + sorted(
    p for p in policies_seen if p.startswith("tis_") and not p.startswith("tis_query"))
if pick is not None:
    missing = [p for p in pick if p not in policies_seen]
    if missing:
        sys.exit(f"recon_summary: no rows of {', '.join(missing)} in these files")
    heads = pick
learned = ["kvzip"] * ("kvzip" in policies_seen) + heads + ["oracle"] * ("oracle" in policies_seen)
if compact:
    def at(cell, pols):
        out = []
        for b in BUDGETS:
            v = [mean(acc[cell + (p, b)]) for p in pols if acc[cell + (p, b)]]
            out.append(f"{max(v):.2f}" if v else "–")
        return " / ".join(out)
    cols = ["best baseline"] + learned
    print("Accuracy at 1 / 2 / 5 / 10 / 25 % of the context per kv head (the best baseline: the best of "
          + ", ".join(BASELINES) + " at each budget); n: samples a cell.\n")
    print("| benchmark | tokens | protocol | full | " + " | ".join(map(md, cols)) + " | n |")
    print("|---|---:|---|---:|" + "---|" * len(cols) + "---:|")
    for cell in cells:
        full = mean(acc[cell + ("full", "1")])
        n = len(acc[cell + ("full", "1")])
        vals = [at(cell, BASELINES)] + [at(cell, [p]) for p in learned]
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {fmt(full)} | " + " | ".join(vals) + f" | {n} |")
    sys.exit(0)
print("Accuracy (retention vs full in the same cell); n samples per cell in the last column.\n")
print("| benchmark | tokens | protocol | full | budget | " + " | ".join(map(md, learned)) + " | best baseline | n |")
print("|---|---:|---|---:|---:|" + "---:|" * len(learned) + "---|---:|")
for cell in cells:
    full = mean(acc[cell + ("full", "1")])
    for b in BUDGETS:
        base = [(mean(acc[cell + (p, b)]), p) for p in BASELINES if acc[cell + (p, b)]]
        if not base and not any(acc[cell + (p, b)] for p in learned):
            continue
        best = max(base) if base else (None, "")
        if base:
            ties = sorted(p for a, p in base if a == best[0])
            best = (best[0], ties[0] if len(ties) == 1 else "all" if len(ties) == len(base)
                    else ", ".join(ties) if len(ties) <= 3 else f"{len(ties)} tied")
        n = max(len(acc[cell + (p, b)]) for p in learned + BASELINES)
        cols = " | ".join(fmt(mean(acc[cell + (p, b)]), full) for p in learned)
        print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {fmt(full)} | {b} | {cols} | "
              f"{fmt(best[0], full)} ({best[1]}) | {n} |")

thr_rows = sorted({k[4] for k in acc if k[4].startswith("t")}, key=lambda t: float(t[1:]))
if thr_rows:
    print("\nThreshold runs: context kept (mean fraction per kv head, measured) / accuracy.\n")
    pols = [p for p in ["kvzip"] * ("kvzip" in policies_seen) + heads if any(k[3] == p and k[4].startswith("t") for k in acc)]
    print("| benchmark | tokens | protocol | threshold | " + " | ".join(map(md, pols)) + " |")
    print("|---|---:|---|---:|" + "---|" * len(pols))
    for cell in cells:
        for t in thr_rows:
            if not any(acc[cell + (p, t)] for p in pols):
                continue
            cols = " | ".join(
                f"{mean(kept[cell + (p, t)]):.3f} / {mean(acc[cell + (p, t)]):.2f}" if acc[cell + (p, t)] else "–"
                for p in pols)
            print(f"| {cell[0]} | {cell[1]} | {cell[2]} | {t[1:]} | {cols} |")

# what the scoring costs, against the prefill of the same sample (one row
# per sample and policy: the smallest budget's, whose compress_s holds the
# scoring: the plan is made once and shared by the budgets)
cost = defaultdict(list)
seen = set()
for path in sys.argv[1:]:
    for r in csv.DictReader(open(path, newline="", encoding="utf-8", errors="replace")):
        key = (r["sample_id"], r["policy"])
        if r["policy"] in ["kvzip", "snapkv"] + heads and key not in seen and float(r["prefill_s"]) > 0:
            seen.add(key)
            cost[r["policy"]].append(float(r["compress_s"]) / float(r["prefill_s"]))
if cost:
    print("\nScoring + first compaction time / prefill time of the same sample (mean over samples):\n")
    print("| policy | cost / prefill | samples |")
    print("|---|---:|---:|")
    for p, v in sorted(cost.items()):
        print(f"| {md(p)} | {100 * sum(v) / len(v):.1f} % | {len(v)} |")
