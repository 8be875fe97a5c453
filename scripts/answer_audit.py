#!/usr/bin/env python3
"""Which rows of `tis eval` CSVs may hold an answer cut short (issue 15, item 6).

Before the `truncated` column, an answer ended at the first newline after
any text, or at the cap (`--max_new`, 16 by default, 12 in the committed
sweeps). Two kinds of row may therefore have lost their answer:
  - at the cap: n_generated == the run's --max_new (read from the command at
    the top of the CSV's .md; 16 when absent), no end of generation before;
  - stopped after a colon: the kept answer ends in ':' (the old rule cut at
    the newline that followed; the value would have come on the next line).
Other CSVs (no n_generated column) are skipped. A CSV with the `truncated` column reports its own flag instead of the cap
guess. Prints one Markdown table: per CSV, rows, each kind, and how many of
those were scored correct anyway, for all rows and for `full`.

With --compare BEFORE.csv AFTER.csv: the same samples run twice (e.g. before
and after a change of the stop rule or the cap): per benchmark x policy x
budget, accuracy before and after, answers that changed, how many of those
became correct / wrong, and the rows marked truncated after.

Usage: scripts/answer_audit.py docs/results/*.csv docs/results/*/*.csv
       scripts/answer_audit.py --compare BEFORE.csv AFTER.csv"""
import csv
import os
import re
import sys


def run_cap(path):
    md = os.path.splitext(path)[0] + ".md"
    try:
        text = open(md, encoding="utf-8", errors="replace").read(20000)
    except OSError:
        return 16
    m = re.search(r"--max_new\s+(\d+)", text)
    return int(m.group(1)) if m else 16


def audit(path):
    cap = run_cap(path)
    n = capped = colon = capped_ok = colon_ok = 0
    fn = fcapped = fcolon = 0
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rd = csv.DictReader(f)
        if "n_generated" not in (rd.fieldnames or []):
            return None
        for r in rd:
            n += 1
            flag = r.get("truncated")
            at_cap = flag == "1" if flag not in (None, "") else int(r["n_generated"]) >= cap
            ends_colon = r["answer"].rstrip().endswith(":")
            ok = r["correct"] == "1"
            capped += at_cap
            colon += ends_colon
            capped_ok += at_cap and ok
            colon_ok += ends_colon and ok
            if r["policy"] == "full":
                fn += 1
                fcapped += at_cap
                fcolon += ends_colon
    return cap, n, capped, capped_ok, colon, colon_ok, fn, fcapped, fcolon


def main(paths):
    print("| CSV | cap | rows | at the cap (correct) | ends in ':' (correct) | full rows | full at the cap | full ends in ':' |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    tot = [0] * 8
    for p in paths:
        got = audit(p)
        if got is None:
            continue  # not a tis eval CSV (the pipeline's request logs)
        cap, *v = got
        for i, x in enumerate(v):
            tot[i] += x
        n, c, cok, k, kok, fn, fc, fk = v
        print(f"| {p} | {cap} | {n} | {c} ({cok}) | {k} ({kok}) | {fn} | {fc} | {fk} |")
    n, c, cok, k, kok, fn, fc, fk = tot
    print(f"| **all** | | {n} | {c} ({cok}) | {k} ({kok}) | {fn} | {fc} | {fk} |")


def compare(before, after):
    def load(path):
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            return {(r["benchmark"], r["policy"], r["protocol"], r["budget"], r["sample_id"]): r
                    for r in csv.DictReader(f)}
    a, b = load(before), load(after)
    cells = {}
    for k, ra in a.items():
        rb = b.get(k)
        if rb is None:
            continue
        c = cells.setdefault(k[:4], [0, 0, 0, 0, 0, 0, 0])
        c[0] += 1
        c[1] += ra["correct"] == "1"
        c[2] += rb["correct"] == "1"
        if ra["answer"] != rb["answer"]:
            c[3] += 1
            c[4] += ra["correct"] != "1" and rb["correct"] == "1"
            c[5] += ra["correct"] == "1" and rb["correct"] != "1"
        c[6] += rb.get("truncated") == "1"
    print("| benchmark | policy | protocol | budget | n | accuracy before | after | answers changed "
          "| now correct | now wrong | truncated after |")
    print("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    tot = [0] * 7
    for k, c in cells.items():
        tot = [x + y for x, y in zip(tot, c)]
        n = c[0]
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {n} | {c[1] / n:.2f} | {c[2] / n:.2f} | {c[3]} | {c[4]} "
              f"| {c[5]} | {c[6]} |")
    n = tot[0] or 1
    print(f"| **all** | | | | {tot[0]} | {tot[1] / n:.3f} | {tot[2] / n:.3f} | {tot[3]} | {tot[4]} | {tot[5]} "
          f"| {tot[6]} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    else:
        main(sys.argv[1:])
