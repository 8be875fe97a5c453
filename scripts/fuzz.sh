#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, one per untrusted input) with clang in
# build-fuzz/, makes their seed corpora from real files (scripts/fuzz_seeds.py),
# runs each target for SECONDS_PER_TARGET (default 30) and prints a table:
# target, executions, edges covered (libFuzzer's cov), features, corpus size,
# crashes. A crash's input is left in build-fuzz/crashes/<target>/: commit
# it to fuzz/regressions/<target>/ with the fix (tests replay it).
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_TARGETS="gguf yaml"  run only these (default: all of fuzz/CMakeLists.txt)
#   FUZZ_TABLE=FILE           also append the table's rows to FILE
# Exit: 0 all clean; 1 a target crashed (or failed to run); 77 no clang with
# libFuzzer here (the run is skipped, with a message).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-30}
bd="$root/build-fuzz"
cc=${FUZZ_CC:-clang}
model=${TIS_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}

probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { return 0; }' >"$probe/p.c"
if ! command -v "$cc" >/dev/null || ! "$cc" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
  echo "[fuzz] skipped: no $cc with libFuzzer (-fsanitize=fuzzer); on Debian: apt-get install clang" >&2
  exit 77
fi

echo "[fuzz] building the targets with $cc in build-fuzz/"
mkdir -p "$bd"
CC=$cc cmake -S "$root" -B "$bd" -DTIS_FUZZ=ON -DTIS_ALLOC_FAULT=OFF -DTIS_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIS_MODEL="$model" >"$bd/configure.log"
if ! cmake --build "$bd" -j "$(nproc)" --target fuzz_all tis >"$bd/build.log" 2>&1; then
  grep -E 'error|Error' "$bd/build.log" | head -40 >&2
  echo "[fuzz] error: the fuzz build failed (full log: build-fuzz/build.log)" >&2
  exit 1
fi
targets=${FUZZ_TARGETS:-$(sed -n '/^set(TIS_FUZZ_TARGETS/,/)/p' "$root/fuzz/CMakeLists.txt" |
  tr -d '()' | sed 's/set//; s/TIS_FUZZ_TARGETS//' | tr -s ' \n' ' ')}

if [ ! -d "$bd/seeds" ] || [ "$root/scripts/fuzz_seeds.py" -nt "$bd/seeds" ]; then
  echo "[fuzz] seed corpora from real files (scripts/fuzz_seeds.py)"
  mkdir -p "$bd/seeds"
  tis="$root/build/tis"; [ -x "$tis" ] || tis="$bd/tis" # (the release build labels faster)
  TIS_MODEL="$model" python3 "$root/scripts/fuzz_seeds.py" "$bd/seeds" --tis "$tis" \
    --envelope "$bd/fuzz/fuzz_envelope"
  touch "$bd/seeds"
fi

declare -A dict=([gguf]=gguf [config_json]=json [tokenizer_json]=json [jsonl]=json [label_manifest]=json
                 [safetensors]=safetensors [st_index]=json [head]=safetensors [label_shard]=safetensors [yaml]=yaml
                 [tokenize]=tokenize [press_name]=press)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TIS_MODEL="$model" TIS_SOURCE_DIR="$root"
fail=0
rows=()
printf '[fuzz] %s s per target: %s\n' "$secs" "$targets"
header=$(printf '%-16s %12s %8s %8s %8s %8s' target runs edges features corpus crashes)
echo "$header"
for t in $targets; do
  corpus="$bd/corpus/$t" crashes="$bd/crashes/$t" log="$bd/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$bd/logs"
  opts=(-max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
        -artifact_prefix="$crashes/")
  [ -n "${dict[$t]:-}" ] && opts+=(-dict="$root/fuzz/dict/${dict[$t]}.dict")
  dirs=("$corpus" "$bd/seeds/$t")
  [ -d "$root/fuzz/regressions/$t" ] && dirs+=("$root/fuzz/regressions/$t")
  rc=0
  (cd "$bd" && "$bd/fuzz/fuzz_$t" "${opts[@]}" "${dirs[@]}") >"$log" 2>&1 || rc=$?
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  edges=$( (grep -oE 'cov: [0-9]+' "$log" || true) | tail -1 | awk '{print $2}')
  ft=$( (grep -oE 'ft: [0-9]+' "$log" || true) | tail -1 | awk '{print $2}')
  nc=$(find "$corpus" -type f | wc -l)
  ncr=$(find "$crashes" -type f | wc -l)
  row=$(printf '%-16s %12s %8s %8s %8s %8s' "$t" "${runs:-?}" "${edges:-?}" "${ft:-?}" "$nc" "$ncr")
  echo "$row"
  rows+=("$row")
  if [ "$rc" -ne 0 ] || [ "$ncr" -ne 0 ]; then
    fail=1
    echo "[fuzz] $t: exit $rc; log build-fuzz/logs/$t.log; inputs in build-fuzz/crashes/$t/:" >&2
    grep -E '^==[0-9]+==ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -8 >&2 || true
  fi
done
if [ -n "${FUZZ_TABLE:-}" ]; then printf '%s\n' "${rows[@]}" >>"$FUZZ_TABLE"; fi
exit $fail
