#!/usr/bin/env python3
"""A natural-text dataset for `tis eval --dataset` (docs/eval.md): questions
on real Debian changelogs (/usr/share/doc/*/changelog.Debian.gz), text no
benchmark generator makes and no committed head was trained on
(scripts/train_recon_head.sh reads /usr/share/doc's README / *.md / *.txt /
*.rst files, never a changelog).

Each sample is a run of consecutive entries of one source package's
changelog, as long as fits in --tokens tokens of the model's tokenizer
(counted with `tis tokenize`; runs under 90 % of that are dropped), and asks
for the words that follow the start of one change line:

  context:  "PKG (1.2-3) unstable; urgency=medium\n\n  * Add openssl to Build-Depends to enable more checks in ..."
  question: 'Which words come right after "Add openssl to Build-Depends to enable" in the changelog above?'
  answers:  ["more checks in"]

The key is the line's first KEY_WORDS words, said once in the run; the
answer the next ANSWER_WORDS words, letters only. The asked entry's depth
in the run cycles over 0, 0.25, 0.5, 0.75, 1 (the nearest entry with such
a line). Two other questions were tried on the same runs (the version
uploaded on a date, the date of a version); the 0.5B model's `full`
answered none right at 4k (docs/results/recon/README.md "Natural text").
Changelogs shared by several binary packages are read
once; packages are taken in a seeded order, one sample each, then again
with another window.

Usage: scripts/make_changelog_qa.py --tokens N --n N --seed S --out FILE.jsonl
         [--tis build/tis] [--model MODEL.gguf] [--docs /usr/share/doc]
The output depends on the packages installed; each sample's "source" says
which changelog entries it holds."""
import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys

HEAD = re.compile(r"^(\S+) \(([^()\s]+)\) [^;\n]*; *urgency=", re.M)
TRAIL = re.compile(r"^ -- .*?<[^>\n]*>  \w{3}, +\d{1,2} \w{3} \d{4} ", re.M)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def entries(text):
    """[(source package, entry text)] of one changelog, newest first; None
    when an entry does not parse (a header, one trailer line): skipped."""
    heads = list(HEAD.finditer(text))
    out = []
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = text[h.start():end].rstrip() + "\n"
        if len(TRAIL.findall(body)) != 1:
            return None
        out.append((h.group(1), body))
    return out


def changelogs(docs, min_entries):
    """{source package: entries}, each changelog once, sorted by name."""
    seen, out = set(), {}
    for path in sorted(glob.glob(os.path.join(docs, "*", "changelog.Debian.gz"))):
        try:
            raw = gzip.open(path).read()
        except OSError as e:
            print(f"make_changelog_qa: skipping {path}: {e}", file=sys.stderr)
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        es = entries(raw.decode("utf-8", "replace"))
        if not es or len(es) < min_entries or len({e[0] for e in es}) != 1:
            continue
        out.setdefault(es[0][0], es)
    return out


KEY_WORDS, ANSWER_WORDS = 6, 3
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[A-Za-z]")


def quotes(entry, context):
    """(key, answer) pairs of an entry's change lines: a line's first
    KEY_WORDS words, said once in the context, and the ANSWER_WORDS words
    after them (words of letters only, so that the answer is text)."""
    for line in entry.splitlines():
        m = re.match(r"^ +[*-] +(.*)$", line)
        if not m:
            continue
        words = m.group(1).split()
        if len(words) < KEY_WORDS + ANSWER_WORDS:
            continue
        rest = words[KEY_WORDS:KEY_WORDS + ANSWER_WORDS]
        if not all(WORD.fullmatch(w) for w in rest):
            continue
        key = " ".join(words[:KEY_WORDS])
        if context.count(key) == 1:
            yield key, " ".join(rest)


class Counter:
    def __init__(self, tis, model):
        self.cmd = [tis, "tokenize", "-m", model, "--ids"]

    def __call__(self, text):
        r = subprocess.run(self.cmd + [text], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"make_changelog_qa: {' '.join(self.cmd[:4])} failed: {r.stderr.strip()}")
        return len(r.stdout.split())


def window(es, start, budget, count):
    """(end, tokens): the longest run es[start:end] whose text fits in
    budget tokens, and its tokens; None when one entry does not fit."""
    text = lambda end: "\n".join(e[1] for e in es[start:end])
    lo, hi = start + 1, len(es)
    n_lo = count(text(lo))
    if n_lo > budget:
        return None
    while lo < hi:  # the largest end that fits
        mid = (lo + hi + 1) // 2
        n = count(text(mid))
        if n <= budget:
            lo, n_lo = mid, n
        else:
            hi = mid - 1
    return lo, n_lo


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, required=True, help="context length in tokens (at most)")
    ap.add_argument("--n", type=int, required=True, help="samples")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--tis", default=os.path.join(root, "build", "tis"))
    ap.add_argument("--model", default=os.path.join(root, "models", "Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf"))
    ap.add_argument("--docs", default="/usr/share/doc")
    a = ap.parse_args()
    if a.tokens < 256 or a.n < 1:
        sys.exit("make_changelog_qa: --tokens must be at least 256 and --n at least 1")
    count = Counter(a.tis, a.model)
    intro = "Debian changelog of the package {}:\n\n"
    logs = changelogs(a.docs, 8)
    rng = random.Random(a.seed)
    names = sorted(logs)
    rng.shuffle(names)
    if not names:
        sys.exit(f"make_changelog_qa: no changelog with 8 or more entries under {a.docs}")
    samples, tries, k = [], 0, 0
    while len(samples) < a.n and tries < 50 * a.n:
        src = names[tries % len(names)]
        tries += 1
        es = logs[src]
        budget = a.tokens - count(intro.format(src)) - 8
        start = rng.randrange(0, max(1, len(es) // 2))
        w = window(es, start, budget, count)
        if w is None or w[0] - start < 5 or w[1] < 0.9 * budget:  # the changelog ran out: another one
            continue
        end = w[0]
        run = es[start:end]
        depth = DEPTHS[k % len(DEPTHS)]
        want = round(depth * (len(run) - 1))
        # the askable entry nearest the depth: a change line of it whose
        # first KEY_WORDS words are said once in the run
        context = intro.format(src) + "\n".join(e[1] for e in run)
        order = sorted(range(len(run)), key=lambda j: (abs(j - want), j))
        quote = next(((j, q) for j in order for q in quotes(run[j][1], context)), None)
        if quote is None:
            continue
        i, (key, rest) = quote
        samples.append({
            "id": f"changelog-{a.tokens}-{len(samples):03d}-{src}",
            "context": context,
            "question": f"Which words come right after \"{key}\" in the changelog above?",
            "answers": [rest],
            "answer_prefix": f"In the changelog, \"{key}\" is followed by \"",
            "source": f"{src} changelog.Debian.gz entries {start}..{end - 1}, asked {start + i}, "
                      f"depth {i / max(1, len(run) - 1):.2f}, {count(context)} tokens",
        })
        k += 1
    if len(samples) < a.n:
        sys.exit(f"make_changelog_qa: only {len(samples)} samples of {a.n} from {len(names)} changelogs")
    tmp = a.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    os.replace(tmp, a.out)
    print(f"make_changelog_qa: {len(samples)} samples from {len(names)} changelogs -> {a.out}")


if __name__ == "__main__":
    main()
