#!/usr/bin/env python3
"""Label pieces that repeat themselves, built from generic text
(docs/head.md "Where the heads lose needles: layer 16").

Reconstruction labels of copy layers (Qwen2.5-0.5B's layer 16) measure how
unique a token is in its context; generic text hardly repeats, so there
they saturate and teach a head nothing. Each piece here takes a chunk of
8-16 lines of one source file and writes it two to four times (and until
the piece has 3,600 bytes), whole or in part, with one or two lines of
other source files inserted once into each copy; at most 4,200 bytes. The
sources are the files of a corpus directory (scripts/train_recon_head.sh's)
whose 5-digit name prefix is FIRST or more, in name order; a file with
fewer than 20 lines of more than 20 characters is skipped. Deterministic
for the same sources and SEED.

With --insert-from FILE... (after the positional arguments), each inserted
line comes with probability 1/2 from the lines of those files instead
(lines of more than 20 characters; say /var/lib/dpkg/status, /etc/services
or md5sums lists: numbers, versions and hashes said once inside text that
repeats, which the copy layers score highest; docs/head.md "Where the
heads lose needles"). Without it the pieces are the same as before it
existed.

Usage: scripts/repeat_corpus.py SRC_DIR OUT_DIR N_PIECES [FIRST] [SEED] [--insert-from FILE...]
  (FIRST default 300, SEED default 5; pieces are named NNNNN-rep-SOURCE)"""
import os
import random
import sys


def lines_of(src, name):
    with open(os.path.join(src, name), encoding="utf-8", errors="replace") as f:
        return [line for line in f.read().split("\n") if len(line.strip()) > 20]


def piece(rng, src, files, chunk, pool=None):
    parts, reps, r = [], rng.randint(2, 4), 0
    while (r < reps or sum(len(p) for p in parts) < 3600) and r <= 12:
        c = list(chunk)
        if r > 0 and rng.random() < 0.5:  # a partial repeat
            a0 = rng.randrange(0, len(c) // 2)
            c = c[a0:a0 + rng.randint(len(c) // 2, len(c))]
        for _ in range(rng.randint(1, 2)):  # lines of other files, once
            if pool and rng.random() < 0.5:
                other = pool
            else:
                other = lines_of(src, files[rng.randrange(len(files))])
            if other:
                c.insert(rng.randrange(len(c) + 1), rng.choice(other))
        parts.append("\n".join(c))
        r += 1
    return "\n\n".join(parts)[:4200] + "\n"


def main():
    if len(sys.argv) < 4 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    argv, pool = sys.argv, None
    if "--insert-from" in argv:
        i = argv.index("--insert-from")
        argv, pool = argv[:i], []
        for path in sys.argv[i + 1:]:
            pool += lines_of(os.path.dirname(path) or ".", os.path.basename(path))
        if not pool:
            sys.exit("repeat_corpus: --insert-from: no line of more than 20 characters in " + " ".join(sys.argv[i + 1:]))
    src, out, n = argv[1], argv[2], int(argv[3])
    first = int(argv[4]) if len(argv) > 4 else 300
    rng = random.Random(int(argv[5]) if len(argv) > 5 else 5)
    files = sorted(f for f in os.listdir(src) if f[:5].isdigit() and int(f[:5]) >= first)
    os.makedirs(out, exist_ok=True)
    k = 0
    for name in files:
        if k == n:
            break
        lines = lines_of(src, name)
        if len(lines) < 20:
            continue
        s = rng.randrange(0, max(1, len(lines) - 20))
        text = piece(rng, src, files, lines[s:s + rng.randint(8, 16)], pool)
        with open(os.path.join(out, f"{k:05d}-rep-{name}"), "w", encoding="utf-8") as f:
            f.write(text)
        k += 1
    if k < n:
        sys.exit(f"repeat_corpus: only {k} of {n} pieces: too few source files from {first} in {src}")
    print(f"repeat_corpus: {k} pieces in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
