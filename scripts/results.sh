#!/usr/bin/env bash
# Reproduces the committed evaluation reports in docs/results/ (issue 3):
# every policy, budgets 0.02-0.5, both protocols, 20 samples per context
# length, on the default model. Takes about 1.5 h on 2 cores.
# Usage: scripts/results.sh [TIS_BINARY] [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tis=${1:-$root/build/tis}
out=${2:-$root/docs/results}
cd "$root"
common=(--baseline full random streaming knorm h2o h2o_acc snapkv tova pyramidkv adakv oracle
        --cache_budgets 0.02 0.05 0.1 0.25 0.5 --protocol both
        --n_samples 20 --max_new 12 --batch 64 --seed 42)
"$tis" eval --benchmark passkey --context_tokens 1024 2048 "${common[@]}" --output "$out/passkey_1k_2k.csv"
"$tis" eval --benchmark niah --context_tokens 1024 2048 "${common[@]}" --output "$out/niah_1k_2k.csv"
"$tis" eval --benchmark niah_multikey litm --context_tokens 2048 "${common[@]}" --output "$out/multikey_litm_2k.csv"
"$tis" eval --benchmark passkey niah --context_tokens 4096 "${common[@]}" --output "$out/passkey_niah_4k.csv"
# Single-request timings (--batch 1): TTFT and decode speed against the budget.
"$tis" eval --benchmark passkey --context_tokens 2048 --n_samples 5 --seed 42 --max_new 12 \
  --baseline full streaming snapkv oracle --cache_budgets 0.1 0.5 --batch 1 --output "$out/timing_2k.csv"
