#!/usr/bin/env python3
"""The per-layer head study's table (scripts/perlayer_study.sh writes OUT/perlayer.csv).

Rows: the feature layer; columns: the stream groups (layers a-b); cells: the best validation
recall@10 % per stream (mean over the group's streams) of a head trained on that group only.
Then, per group, the best feature layer, and two summaries over every stream (the groups are
of equal size, so the mean of the groups' figures is the mean over streams):
  - one trunk: every group read from the same layer (each feature layer in turn);
  - per layer: each group read from its own best layer (chosen on the same validation split:
    an optimistic figure by as much as that choice can add; the `own` row, the feature layer
    inside or nearest the group, is chosen without looking).
Usage: scripts/perlayer_table.py OUT/perlayer.csv [--metric val_recall_10|val_global_recall_10]
"""
import argparse
import csv
from collections import defaultdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", nargs="?", help="OUT/perlayer.csv")
    ap.add_argument("--metric", default="val_recall_10")
    a = ap.parse_args()
    if not a.csv:  # no file: how to call it
        ap.print_help()
        return
    cell = {}
    groups, layers = set(), set()
    for r in csv.DictReader(open(a.csv)):
        g = (int(r["first_layer"]), int(r["last_layer"]))
        f = int(r["feature_layer"])
        cell[(f, g)] = float(r[a.metric])
        groups.add(g)
        layers.add(f)
    groups, layers = sorted(groups), sorted(layers)
    print(f"{a.metric}, per stream group (layers), by feature layer:\n")
    print("| features of layer | " + " | ".join(f"{g[0]}-{g[1]}" for g in groups) + " | mean |")
    print("|---:|" + "---:|" * (len(groups) + 1))
    for f in layers:
        vals = [cell.get((f, g)) for g in groups]
        mean = sum(vals) / len(vals) if all(v is not None for v in vals) else None
        row = [f"{v:.3f}" if v is not None else "-" for v in vals]
        print(f"| {f} | " + " | ".join(row) + f" | {mean:.3f} |" if mean is not None else f"| {f} | " + " | ".join(row) + " | - |")
    best = {g: max((cell[(f, g)], f) for f in layers if (f, g) in cell) for g in groups}
    print("| best layer | " + " | ".join(f"{best[g][1]} ({best[g][0]:.3f})" for g in groups) + " | " +
          f"{sum(best[g][0] for g in groups) / len(groups):.3f} |")

    def own(g):  # the feature layer inside the group nearest its middle, else the nearest
        mid = (g[0] + g[1]) / 2
        return min(layers, key=lambda f: (abs(f - mid), f))
    if all((own(g), g) in cell for g in groups):
        vals = [cell[(own(g), g)] for g in groups]
        print("| own (nearest the group's middle) | " + " | ".join(f"{own(g)} ({v:.3f})" for g, v in zip(groups, vals)) +
              f" | {sum(vals) / len(vals):.3f} |")


if __name__ == "__main__":
    main()
