#!/usr/bin/env python3
"""Checks that no #include goes up a layer (docs/design.md, "Layers").

Each folder below is a layer and may include headers of its own folder and
of the folders it lists, never of another. Headers are named bare
("kv.h"): the script finds the folder that holds each one and judges the
line by that. A header no folder holds (other than system headers in <>)
is an error too, so a misspelt or moved include cannot slip by.

Usage: scripts/check_layers.py [--root DIR]     exit 0: clean; 1: violations
"""
import argparse
import os
import re
import sys

# layer -> the layers it may include (its own is always allowed)
ALLOWED = {
    "base": [],
    "formats": ["base"],
    "kernels": ["base", "formats"],
    "proto": ["base"],
    "engine": ["base", "formats", "kernels"],
    "press": ["base", "formats", "kernels", "engine"],
    "eval": ["base", "formats", "kernels", "engine", "press"],
    "serve": ["base", "formats", "kernels", "engine", "press", "eval", "proto"],
    "include": [],
    "client": ["base", "formats", "kernels", "engine", "press", "eval", "proto", "serve", "include"],
    "http": ["base", "formats", "kernels", "engine", "press", "eval", "proto", "serve", "include", "client"],
    "cli": ["base", "formats", "kernels", "engine", "press", "eval", "proto", "serve", "include", "client", "http"],
}
# Headers generated at build time, by the layer that owns them.
GENERATED = {"tis.pb-c.h": "proto"}
SOURCE_EXT = (".c", ".h", ".cu", ".cuh")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_files(root):
    """(layer, path relative to root) of every source file of every layer."""
    for layer in ALLOWED:
        top = os.path.join(root, layer)
        for dirpath, _, names in os.walk(top):
            for n in sorted(names):
                if n.endswith(SOURCE_EXT):
                    yield layer, os.path.relpath(os.path.join(dirpath, n), root)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    files = list(layer_files(root))
    if not files:
        print(f"check_layers: no layer folders under {root}", file=sys.stderr)
        return 2
    owner = dict(GENERATED)  # header basename -> layer
    bad = []
    for layer, rel in files:
        if rel.endswith((".h", ".cuh")):
            base = os.path.basename(rel)
            if base in owner and owner[base] != layer:
                bad.append(f"{rel}: header name {base} also in {owner[base]}/ (names must be unique)")
            owner[base] = layer
    n_inc = 0
    for layer, rel in files:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for m in INCLUDE_RE.finditer(text):
            n_inc += 1
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            target = owner.get(os.path.basename(inc))
            if target is None:
                bad.append(f"{rel}:{line}: #include \"{inc}\": no layer holds this header")
            elif target != layer and target not in ALLOWED[layer]:
                bad.append(f"{rel}:{line}: #include \"{inc}\" goes up from {layer}/ to {target}/")
    for b in bad:
        print(b)
    print(f"check_layers: {len(files)} files, {n_inc} includes, {len(bad)} violations", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
