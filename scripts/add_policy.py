#!/usr/bin/env python3
"""Adds one policy's rows to committed `tis eval` results, without rerunning
the others.

For each CSV (written by `tis eval`, its .json beside it):
  --rename OLD=NEW  renames policy OLD to NEW in the rows (no rerun), e.g.
                    when a policy's definition changed and the old rows keep
                    their meaning under a new name;
  --drop P          removes policy P's rows (no rerun; e.g. a head that cannot
                    run beside the others when the samples grow: `tis eval
                    --resume` needs every sample to have the same policies);
  --policy P[,Q..]  runs the eval command recorded in the .json again with
                    `--baseline P Q ..` only (same samples: same options and
                    seed; several policies share each sample's prefill),
                    and inserts the new rows after each sample's own,
                    so every sample's rows stay together (what
                    `tis eval --resume` expects).
Then `tis report` re-makes the .json, .md and plots from the CSV, and the
.json / .md get the original command back, with the commands that added or
renamed rows listed under it.

  --extra ARGS      more arguments for that rerun (e.g. '--head H');
  --as NAME         names the added rows NAME (another head of the same
                    policy beside the default head's rows);
  --no_thresholds   reruns without the recorded --thresholds (budget rows
                    only: a one-output head takes none).

  scripts/add_policy.py --rename h2o=h2o_acc --policy h2o docs/results/x.csv
  scripts/add_policy.py --policy tis --as tis_pos --extra '--head H' docs/results/x.csv

Run from the repository root (the default heads load from configs/heads/).
"""
import argparse
import csv
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time


def read_rows(path):
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        r = csv.reader(f)
        header = next(r)
        return header, list(r)


def write_rows(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def eval_args(command, policies, out_csv, no_thresholds=False):
    """The recorded `tis eval ...` command with --baseline POLICIES, --output
    OUT_CSV, no --resume and no plots; the recorded --head_as heads are left
    out too (tis eval refuses a --head_as whose name is not run)."""
    argv = shlex.split(command)
    if argv[:2] != ["tis", "eval"]:
        sys.exit(f"add_policy: not a tis eval command: {command}")
    out, i = [], 2
    while i < len(argv):
        a = argv[i]
        if a in ("--baseline", "--policy", "--head_as") or (no_thresholds and a == "--thresholds"):
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
            continue
        if a in ("--output",):
            i += 2
            continue
        if a in ("--resume", "--no_plots"):
            i += 1
            continue
        out.append(a)
        i += 1
    return out + ["--baseline"] + policies + ["--no_plots", "--output", out_csv]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--policy", help="policy to run and add (P,Q,...: several in one run)")
    ap.add_argument("--rename", help="OLD=NEW: rename a policy in the rows first")
    ap.add_argument("--drop", help="remove policy P's rows (before --policy)")
    ap.add_argument("--tis", default="build/tis", help="the tis binary (default build/tis)")
    ap.add_argument("--extra", default="", help="more tis eval arguments for the rerun, e.g. '--head H'")
    ap.add_argument("--no_thresholds", action="store_true",
                    help="rerun without the recorded --thresholds (a policy that has none, e.g. tis with "
                    "a one-output head, which tis eval refuses them for): budget rows only")
    ap.add_argument("--as", dest="as_name", help="name the added rows NAME instead of the policy's "
                    "(another head of the same policy beside the default's)")
    a = ap.parse_args()
    if not a.policy and not a.rename and not a.drop:
        ap.error("give --policy, --rename and/or --drop")
    for path in a.csv:
        if not path.endswith(".csv"):
            sys.exit(f"add_policy: {path}: give a tis eval results CSV (NAME.csv, its NAME.json beside it)")
        meta_path = path[:-4] + ".json"
        try:
            orig_text = open(meta_path, encoding="utf-8", errors="surrogateescape").read()
            meta = json.loads(orig_text)["meta"]
        except FileNotFoundError:
            sys.exit(f"add_policy: {meta_path} is not there: the run that made {path} has not finished "
                     "(tis eval writes the summary at its end; resume it first, tis eval --resume)")
        except (ValueError, KeyError) as e:
            sys.exit(f"add_policy: {meta_path}: not a tis eval summary ({e})")
        header, rows = read_rows(path)
        col = {name: k for k, name in enumerate(header)}
        notes = list(meta.get("changes", []))
        if a.rename:
            old, new = a.rename.split("=", 1)
            n = 0
            for r in rows:
                if r[col["policy"]] == old:
                    r[col["policy"]] = new
                    n += 1
            notes.append(f"{time.strftime('%Y-%m-%d')}: {n} rows of policy {old} renamed {new}")
        if a.drop:
            kept = [r for r in rows if r[col["policy"]] != a.drop]
            if len(kept) == len(rows):
                sys.exit(f"add_policy: {path} has no rows of {a.drop}")
            notes.append(f"{time.strftime('%Y-%m-%d')}: {len(rows) - len(kept)} rows of policy {a.drop} removed")
            rows = kept
        if a.policy:
            policies = a.policy.split(",")
            if a.as_name and len(policies) > 1:
                sys.exit("add_policy: --as names the rows of one --policy")
            names = {p: (a.as_name or p) for p in policies}
            for name in names.values():
                if any(r[col["policy"]] == name for r in rows):
                    sys.exit(f"add_policy: {path} already has rows of {name}")
            with tempfile.TemporaryDirectory() as tmp:
                out = os.path.join(tmp, "new.csv")
                args = [a.tis, "eval"] + eval_args(meta["command"], policies, out, a.no_thresholds)
                args = args[:-2] + shlex.split(a.extra) + args[-2:]
                print("add_policy:", " ".join(shlex.quote(x) for x in args), flush=True)
                t0 = time.time()
                subprocess.run(args, check=True)
                wall = time.time() - t0
                h2, new_rows = read_rows(out)
            if h2 != header and h2[: len(header)] == header:  # a CSV of an earlier version: its
                rows = [r + [""] * (len(h2) - len(header)) for r in rows]  # new columns unknown ("")
                header = h2
            if h2 != header:
                sys.exit(f"add_policy: {out}: another CSV header")
            by_sample = {}
            for r in new_rows:
                if r[col["policy"]] in names:
                    r[col["policy"]] = names[r[col["policy"]]]
                    by_sample.setdefault(r[col["sample_id"]], []).append(r)
            merged, seen = [], set()
            ids = [r[col["sample_id"]] for r in rows]
            for k, r in enumerate(rows):
                merged.append(r)
                sid = ids[k]
                if k + 1 == len(rows) or ids[k + 1] != sid:  # the sample's last row
                    if sid in seen:
                        sys.exit(f"add_policy: {path}: the rows of sample {sid} are not together")
                    seen.add(sid)
                    if sid not in by_sample:
                        sys.exit(f"add_policy: the rerun has no rows for sample {sid}: not the same samples")
                    merged.extend(by_sample.pop(sid))
            if by_sample:
                sys.exit(f"add_policy: the rerun has samples the CSV lacks: {sorted(by_sample)[:3]}")
            rows = merged
            notes.append(f"{time.strftime('%Y-%m-%d')}: rows of {'policies' if len(policies) > 1 else 'policy'} "
                         f"{', '.join(policies)}{' (as ' + a.as_name + ')' if a.as_name else ''} added by "
                         f"`{' '.join(shlex.quote(x) for x in ['tis', 'eval'] + args[2:-2])}` ({wall:.0f} s)")
        write_rows(path, header, rows)
        # the summary, Markdown and plots from the rows as they are now
        subprocess.run([a.tis, "report", "--csv", path, "--output", path, "--title", meta["title"]],
                       check=True, stdout=subprocess.DEVNULL)
        # the run's own meta block, as tis eval wrote it, with n_rows and the changes
        text = open(meta_path, encoding="utf-8", errors="surrogateescape").read()
        report_cmd = json.loads(text)["meta"]["command"]
        block = re.compile(r'\t"meta":\t\{\n.*?\n\t\},\n', re.S)
        mine = block.search(orig_text).group(0)
        mine = re.sub(r',\n\t\t"changes":\t\[.*?\]\n', "\n", mine, flags=re.S)
        mine = re.sub(r'("n_rows":\t)\d+', lambda m: m.group(1) + str(len(rows)), mine)
        mine = mine[: -len("\n\t},\n")] + ',\n\t\t"changes":\t[' + ", ".join(json.dumps(n) for n in notes) + "]\n\t},\n"
        text = block.sub(lambda m: mine, text, count=1)
        json.loads(text)  # still JSON
        with open(meta_path + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
        os.replace(meta_path + ".tmp", meta_path)
        md_path = path[:-4] + ".md"
        md = open(md_path, encoding="utf-8", errors="surrogateescape").read()
        block = "```\n" + report_cmd + "\n```"
        if block not in md:
            sys.exit(f"add_policy: {md_path}: the command block of tis report not found")
        md = md.replace(block, "```\n" + meta["command"] + "\n```\n\nChanged since:\n\n" +
                        "".join(f"- {n}\n" for n in notes), 1)
        lines = md.split("\n")  # the run's own model, seed, threads and wall time, not the report's
        for k, line in enumerate(lines):
            if line.startswith("- model: "):
                lines[k] = f"- model: `{meta.get('model', '')}`"
            elif line.startswith("- seed: "):
                lines[k] = f"- seed: {meta.get('seed', '')}, threads: {meta.get('threads', '')}"
            elif line.startswith("- wall time: "):
                lines[k] = f"- wall time: {meta.get('wall_s', 0):.1f} s (the first run), {len(rows)} rows"
        md = "\n".join(lines)
        with open(md_path + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(md)
        os.replace(md_path + ".tmp", md_path)
        print(f"add_policy: {path}: {len(rows)} rows", flush=True)


if __name__ == "__main__":
    main()
