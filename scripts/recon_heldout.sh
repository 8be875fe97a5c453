#!/usr/bin/env bash
# The held-out table of issue 15 (docs/results/recon/): query-agnostic
# compression on the 32k model, Qwen2.5-Coder-0.5B-Instruct Q4_K_M
# (scripts/fetch_model.sh qwen2.5-coder-0.5b). Held out as
# docs/results/heldout: the Apache-2.0 haystack and the other wording
# (--phrasing 1), where every learned head here was trained on generic text
# (scripts/train_recon_head.sh), never on a benchmark's haystack. Every
# baseline, kvzip (the reconstruction oracle), the answer oracle and the
# model's default head (configs/heads/MODEL.tis.safetensors, when
# present), fixed budgets and thresholds, one CSV per (length, benchmark);
# a rerun skips finished cells and resumes an unfinished one.
# Usage: scripts/recon_heldout.sh [N_SAMPLES] [PROTOCOL] [LENGTH:BENCHMARK ...]
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${TIS:-$root/build/tis}
model=${MODEL:-$root/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf}
out=${OUT:-$root/docs/results/recon}
n=${1:-10}
protocol=${2:-agnostic}
shift $(( $# < 2 ? $# : 2 ))
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  cells=(4096:passkey 4096:niah 4096:niah_multikey 4096:litm_kv 4096:litm_qa)
fi
policies=(${POLICIES:-full random streaming knorm h2o snapkv tova pyramidkv adakv kvzip oracle})
cd "$root" # default heads load from configs/heads/
mkdir -p "$out"
for cell in "${cells[@]}"; do
  len=${cell%%:*} bench=${cell#*:}
  csv="$out/${protocol}_${len}_${bench}.csv"
  if [ -s "${csv%.csv}.json" ]; then echo "recon_heldout: $csv done, skipped"; continue; fi
  echo "recon_heldout: $bench at $len tokens -> $csv ($(date -u +%H:%M:%S))"
  "$tis" eval -m "$model" --benchmark "$bench" --context_tokens "$len" \
    --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 \
    --baseline "${policies[@]}" --cache_budgets 0.01 0.02 0.05 0.1 0.25 \
    --thresholds 0.005 0.01 0.02 0.05 0.1 --protocol "$protocol" \
    --n_samples "$n" --max_new 48 --batch 64 --seed 42 --resume --output "$csv"
done
