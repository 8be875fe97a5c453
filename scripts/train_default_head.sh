#!/usr/bin/env bash
# Reproduces the default importance heads committed in configs/heads/ for
# the default model: labels from passkey + niah (GPL-3 haystack) at 1k
# tokens with a seed the evaluations do not use, then a query-agnostic head
# (tis) and a query-aware one (tis_query).
# Usage: scripts/train_default_head.sh [TIS_BINARY] [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tis=${1:-$root/build/tis}
work=${2:-$root/results/head-labels}
cd "$root"
"$tis" label --benchmark passkey niah --context_tokens 1024 --n_samples 40 --seed 1001 \
  --output "$work/train"
"$tis" train --labels "$work/train" --head mlp --hidden 64 --loss listwise --epochs 60 \
  --lr 3e-3 --patience 6 --seed 1 --output configs/heads/smollm2-135m-instruct.tis.safetensors
"$tis" train --labels "$work/train" --head mlp --hidden 64 --query_aware --rank 32 --loss listwise \
  --epochs 60 --lr 3e-3 --patience 6 --seed 1 \
  --output configs/heads/smollm2-135m-instruct.tis_query.safetensors
