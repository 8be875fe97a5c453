#!/usr/bin/env bash
# A second pair of heads, trained on every task type (passkey, niah,
# niah_multikey, litm_kv, litm_qa; GPL-3 haystack, the standard wording,
# 1k tokens, data seed 1001), then evaluated where they have not been: the
# Apache-2.0 haystack and the other wording (--phrasing 1), seed 42, the
# same samples as docs/results/heldout. Asks whether the default heads'
# failure on litm (trained on passkey + niah only) is the training data.
# Usage: scripts/train_mix_head.sh [TIS_BINARY] [WORK_DIR] [OUT_DIR]
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${1:-$root/build/tis}
work=${2:-$root/results/head-labels-mix}
out=${3:-$root/docs/results/heldout/mix}
cd "$root"
mkdir -p "$out"
"$tis" label --benchmark passkey niah niah_multikey litm_kv litm_qa --context_tokens 1024 --n_samples 32 \
  --seed 1001 --output "$work/train"
"$tis" train --labels "$work/train" --head mlp --hidden 64 --loss listwise --epochs 60 \
  --lr 3e-3 --patience 6 --seed 1 --output configs/heads/smollm2-135m-instruct.mix.tis.safetensors
"$tis" train --labels "$work/train" --head mlp --hidden 64 --query_aware --rank 32 --loss listwise \
  --epochs 60 --lr 3e-3 --patience 6 --seed 1 \
  --output configs/heads/smollm2-135m-instruct.mix.tis_query.safetensors
"$tis" eval --benchmark passkey niah niah_multikey litm --context_tokens 1024 \
  --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 --n_samples 20 --seed 42 \
  --baseline full streaming snapkv tova tis tis_query oracle \
  --head configs/heads/smollm2-135m-instruct.mix.tis.safetensors \
  --head_query configs/heads/smollm2-135m-instruct.mix.tis_query.safetensors \
  --cache_budgets 0.01 0.02 0.05 0.1 0.25 0.5 --protocol both --max_new 12 --batch 64 \
  --resume --output "$out/apache_phrasing1_1024_mix_heads.csv"
