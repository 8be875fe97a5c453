#!/usr/bin/env bash
# Reproduces the held-out evaluation of the default importance heads
# (docs/results/heldout/): heads trained on passkey + niah, GPL-3 haystack,
# standard wording, 1k tokens (scripts/train_default_head.sh); evaluated on
# the Apache-2.0 haystack with the other wording (--phrasing 1), on every
# benchmark, every baseline + tis + tis_query + oracle, budgets 0.01-0.5,
# both protocols, 20 samples a cell. One CSV per (length, benchmark); a
# rerun skips finished cells and resumes an unfinished one (--resume).
# Takes several hours on 2 cores.
# Usage: scripts/heldout.sh [TIS_BINARY] [OUT_DIR] [LENGTH:BENCHMARK ...]
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${1:-$root/build/tis}
out=${2:-$root/docs/results/heldout}
shift $(( $# < 2 ? $# : 2 ))
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  cells=(1024:passkey 1024:litm 2048:niah 2048:niah_multikey 2048:passkey 2048:litm
         4096:niah 4096:passkey 4096:niah_multikey 4096:litm)
fi
cd "$root" # the default heads load from configs/heads/
common=(--haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1
        --baseline all --cache_budgets 0.01 0.02 0.05 0.1 0.25 0.5 --protocol both
        --n_samples 20 --max_new 12 --batch 64 --seed 42)
for cell in "${cells[@]}"; do
  len=${cell%%:*} bench=${cell#*:}
  csv="$out/apache_phrasing1_${len}_${bench}.csv"
  # the CSV grows row by row; the JSON summary is written when the cell ends
  if [ -s "${csv%.csv}.json" ]; then echo "heldout: $csv done, skipped"; continue; fi
  echo "heldout: $bench at $len tokens -> $csv ($(date -u +%H:%M:%S))"
  "$tis" eval --benchmark "$bench" --context_tokens "$len" "${common[@]}" --resume --output "$csv"
done
