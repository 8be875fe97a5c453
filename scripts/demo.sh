#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh), then runs the main job on the
# default model: a chat answer from compressed-KV-capable tis.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
echo
echo "\$ tis generate --chat -p \"What is the capital of France?\" -n 64"
"$root/build/tis" generate -m "$root/models/SmolLM2-135M-Instruct.Q4_1.gguf" \
  --chat -p "What is the capital of France?" -n 64
