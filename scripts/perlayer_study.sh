#!/usr/bin/env bash
# The per-layer head study (issue 15 item 3, docs/head.md "One trunk or one per layer"):
# which layer's hidden states predict which layers' reconstruction scores.
#
# From one labelling pass (scripts/train_recon_head.sh's labels, any layer), `tis label
# --refeature` writes the same labels with the features of each layer in LAYERS; then for
# every (feature layer F, stream group G) a per-head head is trained on G's streams only
# (`tis train --streams`), and the best validation recall@10 % per stream (the figure that
# limits the learned policy) is collected into OUT/perlayer.csv, one row per (F, group).
# scripts/perlayer_table.py prints the table and the per-layer (grouped) head's figure.
#
# Usage: scripts/perlayer_study.sh MODEL LABELS_DIR OUT "LAYERS" GROUP_LAYERS
#   e.g. scripts/perlayer_study.sh models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf \
#          results/recon-labels/qwen2.5-coder-0.5b-instruct-layer12/labels results/perlayer "2 8 12 14 20" 6
# LABELS_DIR's own layer is used as it is (not refeatured). Env: TIS (binary), HIDDEN (512),
# LR (1e-3), EPOCHS (60), PATIENCE (6).
set -euo pipefail
usage="usage: scripts/perlayer_study.sh MODEL LABELS_DIR OUT \"LAYERS\" GROUP_LAYERS (see the comment at the top)"
case "${1:-}" in -h | --help | "") echo "$usage"; exit 0 ;; esac
[ $# -eq 5 ] || { echo "$usage" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
model=$1 labels=$2 out=$3 layers=$4 group=$5
tis=${TIS:-$root/build/tis}
hidden=${HIDDEN:-512}
lr=${LR:-1e-3}
epochs=${EPOCHS:-60}
patience=${PATIENCE:-6}
mkdir -p "$out"
info=$("$tis" info "$model") # the model's layers and kv heads, one read of the file
n_layer=$(awk '$1 == "layers" { print $2 }' <<<"$info")
n_kv=$(sed -n 's/^heads .*kv heads \([0-9]*\).*/\1/p' <<<"$info")
[ -n "$n_layer" ] && [ -n "$n_kv" ] || { echo "perlayer_study: cannot read layers / kv_heads of $model" >&2; exit 1; }
own=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layer"])' "$labels/label_config.json")
csv=$out/perlayer.csv
[ -f "$csv" ] || echo "feature_layer,first_layer,last_layer,streams,best_epoch,val_loss,val_recall_10,val_global_recall_10" >"$csv"
for F in $layers; do
  dir=$labels
  if [ "$F" != "$own" ]; then
    dir=$out/labels-l$F
    "$tis" label -m "$model" --refeature "$labels" --layer "$F" --output "$dir"
  fi
  for ((a = 0; a < n_layer; a += group)); do
    b=$((a + group < n_layer ? a + group : n_layer))
    s0=$((a * n_kv)) s1=$((b * n_kv))
    if grep -q "^$F,$a,$((b - 1))," "$csv"; then continue; fi
    head=$out/head-f$F-l$a-$((b - 1)).safetensors
    "$tis" train --target recon --labels "$dir" --head mlp --hidden "$hidden" --lr "$lr" --epochs "$epochs" \
      --patience "$patience" --streams "$s0:$s1" --output "$head" 2>&1 | grep -E "best epoch|error|tis train" >&2 || true
    m=${head%.safetensors}_metrics.csv
    # the best epoch: the lowest validation loss (what early stopping keeps)
    python3 - "$m" "$F" "$a" "$((b - 1))" "$s0:$s1" >>"$csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["epoch"] != "0"]
best = min(rows, key=lambda r: float(r["val_loss"]))
print(",".join([sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], best["epoch"], best["val_loss"],
                best["val_recall_10"], best["val_global_recall_10"]]))
PY
  done
done
echo "perlayer_study: $csv" >&2
