#!/usr/bin/env bash
# The held-out table of issue 15 (docs/results/recon/): query-agnostic
# compression on the 32k model, Qwen2.5-Coder-0.5B-Instruct Q4_K_M
# (scripts/fetch_model.sh qwen2.5-coder-0.5b). Held out as
# docs/results/heldout: the Apache-2.0 haystack and the other wording
# (--phrasing 1), where every learned head here was trained on generic text
# (scripts/train_recon_head.sh), never on a benchmark's haystack. Every
# baseline, kvzip (the reconstruction oracle), selfinfo (Selective Context;
# in cells begun after session 21), the answer oracle, the
# model's default head (`tis`, configs/heads/SLUG.tis.safetensors; also as
# `tis+lpool5`, each kept token with the 4 before it, and as
# `tis+lpool5+recent64/8`, the context's last min(64, k/8) tokens of each
# stream kept first) and every
# other committed head of the model (configs/heads/SLUG.tis_NAME.safetensors
# as policy tis_NAME, by tis eval --head_as: all on one prefill per sample;
# the self-information head tis_si also as tis_si+lpool5 and in the union
# tis_si+lpool5|tis+lpool5+recent64/8),
# fixed budgets and thresholds, one CSV per (length, benchmark). A rerun
# resumes (tis eval --resume): finished samples are kept, so a larger
# N_SAMPLES adds samples to the cells (the first N are the same samples);
# a cell already begun runs the policies its CSV has (tis_NAME from
# configs/heads/SLUG.tis_NAME.safetensors), so heads committed or renamed
# since (scripts/add_policy.py) do not stop it (with HEADS set, its heads
# are the ones given).
# Usage: scripts/recon_heldout.sh [N_SAMPLES] [PROTOCOL] [LENGTH:BENCHMARK ...]
# Env: HEADS="NAME=PATH ..." instead of the committed heads (HEADS= none),
# POLICIES, TIS, MODEL, OUT.
set -euo pipefail
case ${1:-} in -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;; esac
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=${TIS:-$root/build/tis}
model=${MODEL:-$root/models/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf}
out=${OUT:-$root/docs/results/recon}
n=${1:-10}
protocol=${2:-agnostic}
shift $(( $# < 2 ? $# : 2 ))
cells=("$@")
if [ ${#cells[@]} -eq 0 ]; then
  cells=(4096:passkey 4096:niah 4096:niah_multikey 4096:litm_kv 4096:litm_qa)
fi
policies=(${POLICIES:-full random streaming knorm h2o snapkv tova pyramidkv adakv kvzip selfinfo oracle})
cd "$root" # default heads load from configs/heads/
# the model's heads: tis (the default one) and tis_NAME for each other one
slug=$("$tis" info "$model" | sed -n 's|^default head *configs/heads/\(.*\)\.tis\.safetensors.*|\1|p')
head_file() { echo "configs/heads/$slug.$1.safetensors"; } # policy tis_NAME's head file
head_as=()
if [ -z "${POLICIES:-}" ] && [ -n "$slug" ] && [ -f "$(head_file tis)" ]; then
  policies+=(tis tis+lpool5 tis+lpool5+recent64/8) # the default head; with its key span; and the context's end
  if [ -z "${HEADS+x}" ]; then
    for f in configs/heads/"$slug".tis_*.safetensors; do
      [ -f "$f" ] || continue
      name=${f#configs/heads/$slug.}; name=${name%.safetensors}
      case $name in tis_query*) continue ;; esac # query-aware: not in this protocol
      cmp -s "$f" "$(head_file tis)" && continue # the default's file: runs as tis
      head_as+=("$name=$f")
    done
  else
    for h in $HEADS; do head_as+=("$h"); done
  fi
  for h in "${head_as[@]}"; do policies+=("${h%%=*}"); done
  case " ${head_as[*]} " in *" tis_si="*) # the self-information head: with its span, and in a union with the lead
    policies+=("tis_si+lpool5" "tis_si+lpool5|tis+lpool5+recent64/8") ;;
  esac
fi
mkdir -p "$out"
# The policies of a CSV already begun, in their order, one per line.
csv_policies() {
  python3 -c 'import csv, sys
seen = []
for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8", errors="replace")):
    if r["policy"] not in seen: seen.append(r["policy"])
print("\n".join(seen))' "$1"
}
for cell in "${cells[@]}"; do
  len=${cell%%:*} bench=${cell#*:}
  csv="$out/${protocol}_${len}_${bench}.csv"
  run_pol=("${policies[@]}") run_as=("${head_as[@]}")
  if [ -s "$csv" ] && [ -z "${POLICIES:-}" ]; then # a cell begun: its policies, in its order
    mapfile -t run_pol < <(csv_policies "$csv")
    [ ${#run_pol[@]} -gt 0 ] || { echo "recon_heldout: $csv has no rows; remove it to start the cell anew" >&2; exit 1; }
    if [ -z "${HEADS+x}" ]; then # its tis_NAME heads from configs/heads/ (with HEADS: those given)
      run_as=()
      for p in "${run_pol[@]}"; do
        for m in ${p//|/ }; do # a union's members; a head's name is its policy's base (tis_si of tis_si+lpool5)
          b=${m%%+*}
          case $b in tis_query*) continue ;; tis_*) ;; *) continue ;; esac
          case " ${run_as[*]} " in *" $b="*) continue ;; esac
          f=$(head_file "$b")
          [ -f "$f" ] || { echo "recon_heldout: $csv has rows of $p but $f is not there" >&2; exit 1; }
          run_as+=("$b=$f")
        done
      done
    fi
  fi
  echo "recon_heldout: $bench at $len tokens, $n samples -> $csv ($(date -u +%H:%M:%S))"
  "$tis" eval -m "$model" --benchmark "$bench" --context_tokens "$len" \
    --haystack /usr/share/common-licenses/Apache-2.0 --phrasing 1 \
    --baseline "${run_pol[@]}" ${run_as[@]:+--head_as "${run_as[@]}"} --cache_budgets 0.01 0.02 0.05 0.1 0.25 \
    --thresholds 0.005 0.01 0.02 0.05 0.1 --protocol "$protocol" \
    --n_samples "$n" --max_new 48 --batch 64 --seed 42 --resume --output "$csv"
done
