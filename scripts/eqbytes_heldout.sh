#!/usr/bin/env bash
# Equal-bytes cells of the reconstruction study (docs/results/recon/,
# "Smaller entries ..."): the held-out cells of scripts/recon_heldout.sh
# (Apache-2.0 haystack, --phrasing 1, seed 42, agnostic protocol, the same
# samples) with a smaller cache type and budgets scaled so that the KV
# bytes match the f16 table's 1 / 2 / 5 / 10 / 25 %: each times the f16
# entry's bytes over the smaller one's (q8_0 keys + q4_0 values: 2.41, the
# default BUDGETS, as in session 16; q4_0: 3.42, BUDGETS="0.0342 0.0684
# 0.171 0.342 0.855"). One CSV per benchmark,
# OUT/eqbytes_TAG_LENGTH_BENCHMARK.csv; a rerun resumes (tis eval
# --resume). scripts/eqbytes_table.py F16.csv SMALL.csv prints the table.
# Usage: scripts/eqbytes_heldout.sh [N_SAMPLES] [LENGTH:BENCHMARK ...]
# Env: KV_TYPE (q8_0,q4_0), BUDGETS, TAG (q8q4z), POLICIES
# ("full tis+lpool5+recent64/8"), HEAD_AS (NAME=FILE pairs for tis eval
# --head_as, e.g. the union's tis_si:
# "tis_si=configs/heads/qwen2.5-coder-0.5b-instruct.tis_si.safetensors"),
# TIS, MODEL, OUT (docs/results/recon/experiments).
set -euo pipefail
case ${1:-} in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${TIS:-$root/build/tis}
model=${MODEL:-$root/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf}
out=${OUT:-$root/docs/results/recon/experiments}
kv_type=${KV_TYPE:-q8_0,q4_0}
budgets=(${BUDGETS:-0.0241 0.0481 0.120 0.241 0.602})
tag=${TAG:-q8q4z}
policies=(${POLICIES:-full tis+lpool5+recent64/8})
head_as=()
for h in ${HEAD_AS:-}; do
  case $h in ?*=?*) head_as+=(--head_as "$h") ;; *) echo "eqbytes_heldout: HEAD_AS '$h': NAME=FILE" >&2; exit 2 ;; esac
done
n=${1:-20}
shift $(( $# < 1 ? $# : 1 ))
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  cells=(4096:niah_multikey 4096:litm_qa 4096:litm_kv 4096:niah 4096:passkey)
fi
for b in "${budgets[@]}"; do
  awk -v b="$b" 'BEGIN { exit !(b + 0 > 0 && b + 0 <= 1) }' ||
    { echo "eqbytes_heldout: budget '$b' is not a fraction in (0, 1]" >&2; exit 2; }
done
cd "$root" # the default head loads from configs/heads/
mkdir -p "$out"
for c in "${cells[@]}"; do
  case $c in [0-9]*:?*) ;; *) echo "eqbytes_heldout: '$c': a cell is LENGTH:BENCHMARK (4096:litm_kv)" >&2; exit 2 ;; esac
done
for c in "${cells[@]}"; do
  len=${c%%:*} bench=${c#*:}
  csv=$out/eqbytes_${tag}_${len}_$bench.csv
  echo "eqbytes_heldout: $bench at $len tokens, --kv_type $kv_type, budgets ${budgets[*]} -> $csv ($(date +%H:%M:%S))"
  "$tis" eval -m "$model" --benchmark "$bench" --context_tokens "$len" \
    --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 --baseline "${policies[@]}" \
    --cache_budgets "${budgets[@]}" --protocol agnostic --kv_type "$kv_type" --n_samples "$n" \
    --max_new 48 --batch 64 --seed 42 --resume --no_plots ${head_as[@]+"${head_as[@]}"} --output "$csv"
done
