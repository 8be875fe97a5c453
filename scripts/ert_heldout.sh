#!/usr/bin/env bash
# End-to-end fine-tuning of the default SmolLM2 head (issue 15 item 5,
# docs/head.md, docs/results/ert/): trains it (tis train --target ert) on
# generated samples of every benchmark (the generators' own haystack and
# wording, seed 2001), then evaluates the starting head and the fine-tuned
# one on the held-out setting of docs/results/heldout (Apache-2.0 haystack,
# the other wording, seed 42), query-agnostic, budgets 2 % and 10 %, with
# full / streaming / snapkv beside them. One CSV per (head, benchmark);
# a rerun skips what is done. Summary: scripts/ert_summary.py OUT.
# Usage: scripts/ert_heldout.sh [N_EVAL_SAMPLES] [LENGTH]
#   env: TIS (binary), OUT (docs/results/ert), TRAIN_SAMPLES (20 per benchmark),
#        EPOCHS (8), LR (3e-4), BETA (4)
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${TIS:-$root/build/tis}
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
out=${OUT:-$root/docs/results/ert}
n=${1:-20}
len=${2:-1024}
benches=(passkey niah niah_multikey litm_kv litm_qa)
init=$root/configs/heads/smollm2-135m-instruct.tis.safetensors
ert=$out/smollm2_ert_${len}.safetensors
cd "$root"
mkdir -p "$out"
if [ ! -s "$ert" ]; then
  "$tis" train --target ert -m "$model" --init "$init" --benchmark "${benches[@]}" \
    --context_tokens "$len" --n_samples "${TRAIN_SAMPLES:-20}" --seed 2001 --epochs "${EPOCHS:-8}" \
    --patience 3 --lr "${LR:-3e-4}" --beta "${BETA:-4}" --output "$ert" 2>&1 | tr '\r' '\n' | tee "$out/train_${len}.log"
fi
common=(--benchmark BENCH --context_tokens "$len" --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1
        --cache_budgets 0.02 0.1 --protocol agnostic --n_samples "$n" --batch 64 --seed 42 --resume)
for bench in "${benches[@]}"; do
  args=("${common[@]/BENCH/$bench}")
  for which in regression ert; do
    csv="$out/${which}_${len}_${bench}.csv"
    if [ -s "${csv%.csv}.json" ]; then echo "ert_heldout: $csv done, skipped"; continue; fi
    echo "ert_heldout: $which head, $bench at $len tokens -> $csv ($(date -u +%H:%M:%S))"
    if [ "$which" = regression ]; then
      "$tis" eval -m "$model" "${args[@]}" --baseline full streaming snapkv tis --head "$init" --output "$csv"
    else
      "$tis" eval -m "$model" "${args[@]}" --baseline tis --head "$ert" --output "$csv"
    fi
  done
done
