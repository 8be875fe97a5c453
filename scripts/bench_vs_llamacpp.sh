#!/usr/bin/env bash
# tis bench and llama.cpp's llama-bench on the same GGUF and threads,
# alternated (A B A B: this machine is shared and noisy), medians and the
# tis / llama.cpp ratio. Nothing of llama.cpp is built or shipped by tis:
# point LLAMA_BENCH at a llama-bench you built (docs/results/perf/README.md
# says how the committed figures were made).
#
# usage: scripts/bench_vs_llamacpp.sh LLAMA_BENCH [MODEL] [THREADS] [ROUNDS]
#   LLAMA_BENCH  the llama-bench binary, or a folder holding bin/llama-bench
#   MODEL        .gguf (default: the default model)
#   THREADS      default: all cores;  ROUNDS: alternations (default 3)
# Tests: pp512, tg128, pp4096, tg128 at 4096 tokens of context, and the peak
# RSS of a pp512 + tg128 run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lb=${1:?usage: $0 LLAMA_BENCH [MODEL] [THREADS] [ROUNDS]}
[ -d "$lb" ] && lb="$lb/bin/llama-bench"
[ -x "$lb" ] || { echo "bench_vs_llamacpp: $lb is not an executable llama-bench" >&2; exit 2; }
model=${2:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
threads=${3:-$(nproc)}
rounds=${4:-3}
tis="$root/build/tis"
[ -x "$tis" ] || { echo "bench_vs_llamacpp: build tis first (scripts/setup.sh)" >&2; exit 2; }
[ -f "$model" ] || { echo "bench_vs_llamacpp: no model at $model" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "[bench] $(basename "$model"), $threads threads, $rounds rounds; tis $(git -C "$root" rev-parse --short HEAD), $lb"

# one figure: NAME TOOL ARGS... -> a line "tool name value" in $out/runs
s_tis() { # name, args
  local name=$1; shift
  "$tis" bench -m "$model" -t "$threads" -r 1 "$@" 2>/dev/null |
    awk -v n="$name" -F'|' '/^\| (pp|tg)/ {gsub(/ /, "", $3); print "tis", n, $3}' >>"$out/runs"
}
s_llama() { # name, args
  local name=$1; shift
  "$lb" -m "$model" -t "$threads" -r 1 -o csv "$@" 2>/dev/null |
    python3 -c 'import csv,sys
rows=list(csv.DictReader(sys.stdin))
for r in rows: print("llama.cpp", sys.argv[1], r["avg_ts"])' "$name" >>"$out/runs"
}
s_rss() { # tool -> peak RSS (KiB) of a pp512 + tg128 run
  local t
  if [ "$1" = tis ]; then
    t=$( { /usr/bin/time -f "%M" "$tis" bench -m "$model" -t "$threads" -r 1 -p 512 -n 128 >/dev/null; } 2>&1 | tail -1)
  else
    t=$( { /usr/bin/time -f "%M" "$lb" -m "$model" -t "$threads" -r 1 -p 512 -n 128 >/dev/null; } 2>&1 | tail -1)
  fi
  echo "$1 rss_mib $((t / 1024))" >>"$out/runs"
}

for r in $(seq 1 "$rounds"); do
  echo "[bench] round $r/$rounds"
  s_tis pp512 -p 512 -n 0;           s_llama pp512 -p 512 -n 0
  s_tis tg128 -p 0 -n 128;           s_llama tg128 -p 0 -n 128
  s_tis pp4096 -p 4096 -n 0;         s_llama pp4096 -p 4096 -n 0
  s_tis tg128@d4096 -p 0 -n 128 -d 4096; s_llama tg128@d4096 -p 0 -n 128 -d 4096
  s_rss tis;                         s_rss llama.cpp
done

python3 - "$out/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    tool, name, v = line.split()
    runs.setdefault(name, {}).setdefault(tool, []).append(float(v))
print(f"| {'figure':<12} | {'tis':>9} | {'llama.cpp':>9} | {'tis / llama.cpp':>15} |")
print(f"|{'-'*14}|{'-'*11}|{'-'*11}|{'-'*17}|")
for name in ["pp512", "tg128", "pp4096", "tg128@d4096", "rss_mib"]:
    t, l = runs.get(name, {}).get("tis"), runs.get(name, {}).get("llama.cpp")
    mt = statistics.median(t) if t else float("nan")
    ml = statistics.median(l) if l else float("nan")
    ratio = mt / ml if t and l and ml else float("nan")
    label = "peak RSS MiB" if name == "rss_mib" else name + " tok/s"
    print(f"| {label:<12} | {mt:9.1f} | {ml:9.1f} | {ratio:15.2f} |")
print("medians over the rounds; tok/s higher is better, RSS lower is better")
PY
