#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the main job on the
# default model: a chat answer, then a small KV-compression evaluation
# (passkey at 1k tokens: accuracy and measured KV bytes per policy and budget).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
echo
echo "\$ tis generate --chat -p \"What is the capital of France?\" -n 64"
"$root/build/tis" generate -m "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --chat -p "What is the capital of France?" -n 64
echo
echo "\$ tis eval --benchmark passkey --context_tokens 1024 --n_samples 5 --baseline full streaming snapkv oracle --cache_budgets 0.05 0.25"
"$root/build/tis" eval -m "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --benchmark passkey --context_tokens 1024 --n_samples 5 \
  --baseline full streaming snapkv oracle --cache_budgets 0.05 0.25 \
  --output "$root/results/demo.csv"
echo
sed -n '/^## passkey/,$p' "$root/results/demo.md" | sed '/^## Plots/,$d'
