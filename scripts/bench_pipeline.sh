#!/usr/bin/env bash
# Measures the pipeline on this machine (docs/results/pipeline/), every
# figure against a baseline taken in the same run:
#   1. the same requests in process (tis eval) and through tis serve with one
#      prefill and one decode worker (tis client), one at a time and all at
#      once, at 1k and 4k tokens (passkey, snapkv at 0.25, 12 answer tokens);
#   2. hand-off time (the decode worker mapping and copying the block)
#      against the compressed cache's bytes, budgets 1 / 0.25 / 0.1;
#   3. batched decode throughput from compressed caches against the number
#      of requests decoded together, under a fixed KV memory cap (tis bench).
# Usage: scripts/bench_pipeline.sh [TIS_BINARY] [OUT_DIR]   (about 10 minutes)
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${1:-$root/build/tis}
out=${2:-$root/docs/results/pipeline}
mkdir -p "$out"
cd "$root"
tmp=$(mktemp -d /tmp/tis-bench-XXXXXX)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
front=ipc://$tmp/front back=ipc://$tmp/back

for len in 1024 4096; do
  n=4; [ "$len" -gt 2048 ] && n=3
  data=$out/passkey_$len.jsonl
  "$tis" eval --benchmark passkey --context_tokens "$len" --n_samples "$n" --seed 7 --export "$data"
  echo "== $len tokens: in process"
  "$tis" eval --dataset "$data" --baseline snapkv --cache_budgets 0.25 --max_new 12 --batch 1 \
    --no_plots --output "$out/inproc_$len.csv" 2>&1 | tail -1
  "$tis" serve --front "$front" --back "$back" --prefill 1 --decode 1 2> "$tmp/serve.log" &
  srv=$!
  for _ in $(seq 100); do "$tis" status --connect "$front" --timeout_ms 500 2>/dev/null | grep -q decode && break; sleep 0.2; done
  for c in 1 "$n"; do
    echo "== $len tokens: pipeline, $c at once"
    "$tis" client --connect "$front" --dataset "$data" --policy snapkv --budget 0.25 --max_new 12 \
      --concurrency "$c" --quiet --timings "$out/pipe_${len}_c$c.csv" 2> "$out/pipe_${len}_c$c.log"
    tail -1 "$out/pipe_${len}_c$c.log"
  done
  for b in 1 0.25 0.1; do
    echo "== $len tokens: hand-off at budget $b"
    "$tis" client --connect "$front" --dataset "$data" --policy snapkv --budget "$b" --max_new 4 \
      --concurrency 1 --quiet --timings "$out/handoff_${len}_$b.csv" 2> /dev/null
  done
  "$tis" status --connect "$front" > "$out/status_$len.txt"
  kill "$srv"; wait "$srv" 2>/dev/null || true; srv=
done
echo "== batched decode under a 64 MiB KV cap"
"$tis" bench --context 1024 --budgets 1 0.25 0.1 --kv_cap_mb 64 -n 32 -r 2 | tee "$out/decode_kvcap_1k.txt"
python3 "$root/scripts/pipeline_report.py" "$out" > "$out/README.md"
echo "wrote $out/README.md"
