#!/usr/bin/env bash
# gpu_pipeline_check.sh TIS MODEL OUT_DIR [--dry-run]: CUDA workers in the pipeline (issue 16
# item 2) on the GPU machine. The same questions (passkey at 512 and 2048 tokens, snapkv 0.25,
# greedy, 12 answer tokens, one at a time; f32 KV blocks and f32 activations everywhere, as
# gpu_check.sh's greedy check) through tis serve, each run's answers against the cpu run's:
#   cpu       cpu workers: the reference
#   cuda_ipc  a prefill and a decode worker on cuda:0, the decode steps kept on the CPU
#             (TIS_WORKER_HOST_FORWARD=1): only the hand-off differs (device pool, CUDA IPC),
#             so the answers must be byte-identical; any corruption of the block shows
#   cuda      the same with the decode steps on the GPU (the device-resident forward): the
#             issue's "decode through CUDA IPC gives the in-process answers"
#   cuda2     (two GPUs or more) prefill on cuda:0, decode on cuda:1: the pool opened on
#             cuda:0, the cache uploaded to cuda:1. Writes
# OUT_DIR/pipeline_<mode>.csv (tis client --timings: handoff_s per request) and .txt (answers),
# and OUT_DIR/pipeline.md (hand-off medians per mode). Exit 77 without a GPU; --dry-run runs
# every mode on cpu workers (checks this script on a machine without one).
set -uo pipefail
tis=$1 model=$2 out=$3
dry=0
[ "${4:-}" = "--dry-run" ] && dry=1
ngpu=0
[ $dry = 0 ] && ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ $dry = 0 ] && [ "$ngpu" -lt 1 ]; then echo "gpu_pipeline_check: skipped: no GPU (nvidia-smi -L)"; exit 77; fi
mkdir -p "$out"
tmp=$(mktemp -d /tmp/tis-gpupipe-XXXXXX)
chmod 700 "$tmp"
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
front=ipc://$tmp/front back=ipc://$tmp/back
data=$tmp/data.jsonl
for len in 512 2048; do
  "$tis" eval -m "$model" --benchmark passkey --context_tokens $len --n_samples 2 --seed 7 --export "$tmp/p$len.jsonl" ||
    exit 1
  cat "$tmp/p$len.jsonl" >>"$data"
done

export TIS_KV_TYPE=f32 TIS_QDOT_ACT=f32

# run MODE PREFILL_DEVICE DECODE_DEVICE HOST_FORWARD(0|1)
run() {
  local mode=$1 pd=$2 dd=$3 hf=$4 rc=0
  printf 'prefill:\n  workers: 1\n  device: %s\ndecode:\n  workers: 1\n  device: %s\n' "$pd" "$dd" >"$tmp/$mode.yaml"
  TIS_WORKER_HOST_FORWARD=$hf "$tis" serve -m "$model" --config "$tmp/$mode.yaml" --front "$front" --back "$back" \
    2>"$out/pipeline_$mode.log" &
  srv=$!
  for _ in $(seq 150); do "$tis" status --connect "$front" --timeout_ms 500 2>/dev/null | grep -q decode && break; sleep 0.2; done
  "$tis" client --connect "$front" --dataset "$data" --policy snapkv --budget 0.25 --max_new 12 --concurrency 1 \
    --timings "$out/pipeline_$mode.csv" >"$out/pipeline_$mode.txt" 2>>"$out/pipeline_$mode.log" || rc=1
  kill "$srv" 2>/dev/null
  wait "$srv" 2>/dev/null
  srv=
  if [ "$pd" != cpu ] && ! grep -q "compressed blocks in a device pool" "$out/pipeline_$mode.log"; then
    echo "$mode: the prefill worker did not report its device pool"
    rc=1
  fi
  return $rc
}

fail=0
dev0=cuda:0 dev1=cuda:1
[ $dry = 1 ] && dev0=cpu dev1=cpu
run cpu cpu cpu 0 || fail=1
run cuda_ipc "$dev0" "$dev0" 1 || fail=1
run cuda "$dev0" "$dev0" 0 || fail=1
modes="cpu cuda_ipc cuda"
if [ "$ngpu" -ge 2 ] || [ $dry = 1 ]; then
  run cuda2 "$dev0" "$dev1" 0 || fail=1
  modes="$modes cuda2"
fi
{
  echo "# CUDA workers in the pipeline ($(date -u '+%Y-%m-%d %H:%M UTC'), $ngpu GPU(s)$([ $dry = 1 ] && echo ', DRY RUN: cpu workers only'))"
  echo
  echo "| mode | requests ok | answers equal to cpu's | hand-off median (ms) | max (ms) |"
  echo "|---|---|---|---|---|"
  for m in $modes; do
    ok=$(grep -c ',ok,' "$out/pipeline_$m.csv" 2>/dev/null || echo 0)
    same=no
    cmp -s "$out/pipeline_cpu.txt" "$out/pipeline_$m.txt" && [ -s "$out/pipeline_$m.txt" ] && same=yes
    [ $same = yes ] || [ $m = cpu ] || fail=1
    stats=$(awk -F, 'NR > 1 && $2 == "ok" { print $9 * 1000 }' "$out/pipeline_$m.csv" 2>/dev/null | sort -g |
      awk '{ v[NR] = $1 } END { if (NR) printf "%.3f | %.3f", v[int((NR + 1) / 2)], v[NR]; else printf "- | -" }')
    echo "| $m | $ok | $same | $stats |"
  done
} >"$out/pipeline.md"
cat "$out/pipeline.md"
exit $fail
