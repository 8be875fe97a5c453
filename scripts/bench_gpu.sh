#!/usr/bin/env bash
# bench_gpu.sh: tis on a GPU beside PyTorch at the same shapes, and the CUDA IPC hand-off time vs
# block size; one folder of results (CSV + a Markdown table with tis / PyTorch ratios).
#
#   scripts/bench_gpu.sh                the device run (scripts/gpu_check.sh calls it)
#   scripts/bench_gpu.sh --cpu          the same steps on the CPU at small sizes: exercises the
#                                       script, the log parsing and the report where no GPU is;
#                                       GPU-only steps are reported as skipped
#
# Environment: BUILD (the build folder, default build), RESULTS (default ${OUT:-results}/gpu),
# WORK (scratch: generated models; default /tmp/tis-gpu-bench), LAYERS_7B (layers of the 7B
# shapes, default 4: every per-layer figure is the full model's; the whole 32, 14.5 GB, would
# take minutes to write and load), STEP_S (seconds per step, default 90), TIS_DEVICE (default cuda:0),
# DEADLINE (epoch seconds: no step runs past it; later steps are recorded as skipped),
# TIS_DEVICE_WTYPE (the weight bytes tis's decode HBM fraction counts: how the device holds the
# weights; default f32, what the forward uploads today; "file": the model file's type),
# TIS_KV (tis's --kv_type; default f32 for the first run: the exact comparison; the CUDA attention
# also reads f16 and bf16 caches, TIS_KV=f16 measures the default cache type).
#
# What runs (each step under `timeout`, a failed step is recorded and the next one runs), in order:
#   ipc      build/test_cuda_ipc_bench --sizes 4K,64K,1M,16M,256M,1G --reps 30 (first: it needs
#            nothing else)
#   models   the default model models/SmolLM2-135M-Instruct.Q4_1.gguf when present, else
#            `tis gen-model --config smollm2-135m --type q4_1` (its shapes and its Q4_1 blocks,
#            random values: the same speed); `tis gen-model --config mistral-7b --type bf16
#            --layers LAYERS_7B` for 7B shapes
#   tis      `tis bench -m M --device cuda:0 --kv_type f32 -p T -n 0` for T = 2048, 8192, 32768
#            (prefill), and `tis bench -m M --device cuda:0 --kv_type f32 -n 16 --context 8192 --budgets 1 0.25 0.1
#            --max_batch 64 --kv_cap_mb 65536` (decode from compressed caches)
#            (`--device` is the device-resident forward's, issue 16 item 1)
#   torch    scripts/bench_torch.py at the same shapes (smollm2-135m; mistral-7b at LAYERS_7B)
#   report   scripts/bench_gpu_report.py: RESULTS/results.csv and RESULTS/results.md
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cpu=0
[ "${1:-}" = "--cpu" ] && cpu=1
BUILD=${BUILD:-$root/build}
RESULTS=${RESULTS:-${OUT:-$root/results}/gpu}
WORK=${WORK:-/tmp/tis-gpu-bench}
LAYERS_7B=${LAYERS_7B:-4}
STEP_S=${STEP_S:-90}
TIS_DEVICE=${TIS_DEVICE:-cuda:0}
TIS_KV=${TIS_KV:-f32}
tis=$BUILD/tis
mkdir -p "$RESULTS" "$WORK"
log=$RESULTS/bench_gpu.log
: >"$log"
if [ $cpu = 1 ]; then # small sizes, no --device flag: the CPU path of today's tis bench
  PREFILL="64 128"; CONTEXT=256; BATCHES="1,2"; NGEN=2; DEV=(); LAYERS_7B=1
else
  PREFILL="2048 8192 32768"; CONTEXT=8192; BATCHES="1,16,64"; NGEN=16; DEV=(--device "$TIS_DEVICE")
fi

# step NAME SECONDS CMD...: runs CMD under timeout, output to RESULTS/NAME.log; one line per
# step in the log and in RESULTS/steps.csv (name, status, seconds).
step() {
  local name=$1 secs=$2
  shift 2
  local t0=$SECONDS rc=0
  if [ -n "${DEADLINE:-}" ]; then
    local left=$((DEADLINE - $(date +%s)))
    if [ $left -lt 5 ]; then
      echo "$name,\"skipped: out of time (the run's deadline)\",0" >>"$RESULTS/steps.csv"
      echo "[bench_gpu] $name: skipped: out of time" | tee -a "$log"
      return 124
    fi
    [ $left -lt "$secs" ] && secs=$left
  fi
  timeout --kill-after=5 "$secs" "$@" >"$RESULTS/$name.log" 2>&1 || rc=$?
  local st=ok
  [ $rc -eq 0 ] || st="failed (exit $rc)"
  [ $rc -eq 124 ] && st="timed out after ${secs}s"
  [ $rc -eq 77 ] && st="skipped: $(grep -m1 -i 'skipped' "$RESULTS/$name.log" | cut -c1-200)"
  [ $rc -eq 2 ] && grep -q "bench_torch: " "$RESULTS/$name.log" && st="skipped: $(grep -m1 'bench_torch: ' "$RESULTS/$name.log" | cut -c1-200)"
  echo "$name,\"$st\",$((SECONDS - t0))" >>"$RESULTS/steps.csv"
  echo "[bench_gpu] $name: $st ($((SECONDS - t0)) s)" | tee -a "$log"
  return $rc
}

echo "step,status,seconds" >"$RESULTS/steps.csv"
echo "[bench_gpu] results in $RESULTS ($([ $cpu = 1 ] && echo 'CPU mode: small sizes' || echo "device $TIS_DEVICE"))" | tee -a "$log"

# the IPC hand-off vs block size
if [ $cpu = 1 ]; then
  step ipc 30 "$BUILD/test_cuda_ipc_bench" --sizes 4K,1M --reps 3 --csv "$RESULTS/ipc.csv"
else
  step ipc "$STEP_S" "$BUILD/test_cuda_ipc_bench" --sizes 4K,64K,1M,16M,256M,1G --reps 30 --csv "$RESULTS/ipc.csv"
fi

# models (models.csv: key, preset, layers, weight type, path)
echo "key,preset,layers,wtype,path" >"$RESULTS/models.csv"
smol=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$smol" ]; then
  echo "smollm2,smollm2-135m,30,q4_1,$smol" >>"$RESULTS/models.csv"
else
  smol=$WORK/smollm2-135m-q4_1.gguf
  [ -f "$smol" ] || step gen_smollm2 "$STEP_S" "$tis" gen-model --config smollm2-135m --type q4_1 --out "$smol"
  [ -f "$smol" ] && echo "smollm2,smollm2-135m,30,q4_1,$smol" >>"$RESULTS/models.csv"
fi
big=$WORK/mistral-7b-bf16-l$LAYERS_7B.gguf
[ -f "$big" ] || step gen_7b "$STEP_S" "$tis" gen-model --config mistral-7b --type bf16 --layers "$LAYERS_7B" --out "$big"
[ -f "$big" ] && echo "7b,mistral-7b,$LAYERS_7B,bf16,$big" >>"$RESULTS/models.csv"

# tis: prefill per length, decode from compressed caches
for key in smollm2 7b; do
  m=$(awk -F, -v k=$key '$1 == k { print $5 }' "$RESULTS/models.csv")
  [ -n "$m" ] || { echo "[bench_gpu] no $key model: its tis steps are skipped" | tee -a "$log"; continue; }
  for T in $PREFILL; do
    reps=2
    [ "$T" -ge 32768 ] && reps=1
    step "tis_${key}_pp$T" "$STEP_S" "$tis" bench -m "$m" "${DEV[@]}" --kv_type "$TIS_KV" -p "$T" -n 0 -r $reps
  done
  step "tis_${key}_decode" "$((STEP_S * 2))" "$tis" bench -m "$m" "${DEV[@]}" --kv_type "$TIS_KV" -n $NGEN -r 1 \
    --context $CONTEXT \
    --budgets 1 0.25 0.1 --max_batch "${BATCHES##*,}" --kv_cap_mb 65536
done

# PyTorch at the same shapes
pp=$(echo $PREFILL | tr ' ' ,)
step torch_smollm2 "$STEP_S" env PYTHONUNBUFFERED=1 python3 "$root/scripts/bench_torch.py" --models smollm2-135m \
  --prefill "$pp" --batches "$BATCHES" --context $CONTEXT --steps 32 --out "$RESULTS" --name torch_smollm2 \
  --time_limit "$((STEP_S - 20))"
step torch_7b "$STEP_S" env PYTHONUNBUFFERED=1 python3 "$root/scripts/bench_torch.py" --models mistral-7b \
  --layers "$LAYERS_7B" --prefill "$pp" --batches "$BATCHES" --context $CONTEXT --steps 32 --out "$RESULTS" \
  --name torch_7b --time_limit "$((STEP_S - 20))"

title="tis vs PyTorch on the GPU ($TIS_DEVICE)"
[ $cpu = 1 ] && title="bench_gpu.sh --cpu: a dry run of the script on the CPU at small sizes (NOT a GPU result)"
DEADLINE= step report 60 python3 "$root/scripts/bench_gpu_report.py" "$RESULTS" --batches "$BATCHES" \
  --decode_steps $NGEN --title "$title" --tis_wtype "${TIS_DEVICE_WTYPE:-f32}" \
  --tis_kv "$TIS_KV"
cat "$RESULTS/report.log" >>"$log"
echo "[bench_gpu] done: $RESULTS/results.md" | tee -a "$log"
