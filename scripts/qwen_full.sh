#!/usr/bin/env bash
# The `full` (uncompressed) ceiling of Qwen2.5-Coder-0.5B-Instruct on every
# benchmark (docs/results/qwen_full/): the held-out data setting of
# docs/results/heldout (Apache-2.0 haystack, --phrasing 1, seed 42), so the
# SmolLM2 figures there are the same samples; answers up to 48 tokens.
# One CSV per (length, benchmark), always run with --resume: sample i of a
# cell does not depend on --n_samples (depth i mod 5), so a cell grows from
# 5 to 10 to 20 samples by rerunning with a larger N, and the default order
# gives every benchmark a few samples before any gets many.
# Usage: scripts/qwen_full.sh [TIS_BINARY] [OUT_DIR] [LENGTH:N_SAMPLES:BENCHMARK ...]
#   e.g. scripts/qwen_full.sh build/tis docs/results/qwen_full 4096:20:passkey
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${1:-$root/build/tis}
out=${2:-$root/docs/results/qwen_full}
shift $(( $# < 2 ? $# : 2 ))
model=${QWEN_MODEL:-$root/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf}
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  for n in 5 10 20; do
    for b in passkey niah niah_multikey litm_kv litm_qa; do cells+=("4096:$n:$b"); done
  done
  for n in 5 10; do
    for b in passkey niah niah_multikey litm_kv litm_qa; do cells+=("8192:$n:$b"); done
  done
  for b in passkey niah niah_multikey litm_kv litm_qa; do cells+=("16384:5:$b"); done
fi
common=(-m "$model" --baseline full --haystack /usr/share/common-licenses/Apache-2.0
        --phrasing 1 --max_new 48 --seed 42 --no_plots)
mkdir -p "$out"
for cell in "${cells[@]}"; do
  IFS=: read -r len n bench <<<"$cell"
  csv="$out/qwen_full_${len}_${bench}.csv"
  echo "qwen_full: $bench at $len tokens, $n samples -> $csv ($(date -u +%H:%M:%S))"
  "$tis" eval --benchmark "$bench" --context_tokens "$len" --n_samples "$n" "${common[@]}" \
    --resume --output "$csv"
done
