#!/usr/bin/env python3
"""Checks the size rules of ../shared/STYLE.md that a script can judge.

- No function over MAX_FUNC lines (signature to closing brace) in the .c and
  .cu files outside tests/ (generated code is not in the tree: protoc-c
  writes into the build directory).
- No top-level folder over MAX_SHARE of the C/CUDA lines (.c .h .cu .cuh;
  tests/ and scripts/ not counted): one layer holding most of the code is
  usually several concepts.

Prints the functions over the limit, longest first, and every folder's
share. Files are those git knows or would add (tracked, or untracked and
not ignored), so build directories never count.

Usage: scripts/check_size.py [--root DIR] [--max-func N] [--max-share F]
exit 0: within the limits; 1: a function or a folder over them
"""
import argparse
import os
import re
import subprocess
import sys

MAX_FUNC = 120
MAX_SHARE = 0.30
SOURCE_EXT = (".c", ".h", ".cu", ".cuh")
FUNC_EXT = (".c", ".cu")
NOT_COUNTED = {"tests", "scripts"}


def source_files(root):
    """Paths (relative to root) of the C/CUDA sources git knows or would add."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        paths = out.splitlines()
    except (OSError, subprocess.CalledProcessError):
        paths = []
        for dirpath, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith((".", "build"))]
            paths += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(p for p in paths if p.endswith(SOURCE_EXT) and os.path.isfile(os.path.join(root, p)))


def strip_code(text):
    """The text with comments, string and character literals blanked (newlines
    kept, so line numbers stay), and preprocessor lines emptied."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + re.sub(r"[^\n]", " ", text[i + 1:j - 1]) + c)
            i = j
        else:
            out.append(c)
            i += 1
    lines = "".join(out).split("\n")
    in_pp = False
    for k, line in enumerate(lines):  # preprocessor lines, with their continuations
        if in_pp or line.lstrip().startswith("#"):
            in_pp = line.rstrip().endswith("\\")
            lines[k] = ""
    return lines


def function_name(head):
    """The name of the function whose signature is head (the file-scope text
    before a "{"), or None when that "{" opens something else (a struct, an
    initialiser, extern "C")."""
    if "(" not in head or ")" not in head:
        return None
    pre = head.split("(")[0]
    if "=" in pre or re.match(r"\s*typedef\b", pre):
        return None
    m = re.search(r"([A-Za-z_]\w*)\s*$", pre)
    return m.group(1) if m else None


def functions(path):
    """(name, first line, length in lines) of every function defined in a
    C/CUDA file; the length runs from the signature's first line to the
    closing brace."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = strip_code(f.read())
    found = []
    depth, head, head_line = 0, "", None  # head: file-scope text since the last ; or }
    name, start = None, None
    for ln, line in enumerate(lines, 1):
        for ch in line + "\n":
            if depth > 0:
                depth += (ch == "{") - (ch == "}")
                if depth == 0:
                    if name:
                        found.append((name, start, ln - start + 1))
                    head, head_line = "", None
            elif ch == "{":
                name, start = function_name(head), head_line
                depth = 1
            elif ch in ";}":
                head, head_line = "", None
            else:
                if head_line is None and not ch.isspace():
                    head_line = ln
                head += ch
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--max-func", type=int, default=MAX_FUNC)
    ap.add_argument("--max-share", type=float, default=MAX_SHARE)
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    files = source_files(root)
    if not files:
        print(f"check_size: no C/CUDA sources under {root}", file=sys.stderr)
        return 2
    long_funcs, per_folder = [], {}
    for rel in files:
        top = rel.split("/")[0] if "/" in rel else "."
        if top in NOT_COUNTED:
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            per_folder[top] = per_folder.get(top, 0) + sum(1 for _ in f)
        if rel.endswith(FUNC_EXT):
            long_funcs += [(n, rel, s, k) for n, s, k in functions(os.path.join(root, rel)) if k > args.max_func]
    bad = 0
    for name, rel, start, k in sorted(long_funcs, key=lambda x: -x[3]):
        print(f"{rel}:{start}: {name}: {k} lines (over {args.max_func})")
        bad += 1
    total = sum(per_folder.values())
    print(f"C/CUDA lines per folder ({total} in all; tests/ and scripts/ not counted):")
    for top, n in sorted(per_folder.items(), key=lambda x: -x[1]):
        share = n / total
        over = share > args.max_share
        bad += over
        print(f"  {top + '/':<10} {n:7d}  {100 * share:5.1f} %{'  (over %.0f %%)' % (100 * args.max_share) if over else ''}")
    print(f"check_size: {len(long_funcs)} functions over {args.max_func} lines, "
          f"{sum(n / total > args.max_share for n in per_folder.values())} folders over "
          f"{100 * args.max_share:.0f} %", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
