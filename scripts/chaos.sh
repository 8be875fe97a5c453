#!/usr/bin/env bash
# Chaos run of the pipeline (docs/pipeline.md, "Chaos"): a coordinator
# (tis serve, no local workers) and five `tis worker` processes started by
# this script (2 prefill, 1 scorer, 2 decode), all on the default model.
# Each round, six clients (policies full, snapkv, tis -- tis is scored by the
# scorer -- each agnostic and query-aware) send the dataset's requests while
# this script SIGKILLs a random process of any role, the coordinator
# included, every 0.5 to 2.5 s, and restarts it (same name: the new worker
# removes its predecessor's segment). After each round it checks:
#   - every request answered exactly once: with the answer `tis eval` gives
#     in one process, or with an Error (attempts ran out; counted);
#   - no duplicate result from the server (the client counts those it drops);
#   - no /dev/shm segment of this run but the live workers' arenas, and none
#     at all once everything is shut down; no zombie child;
#   - the survivors' memory (RSS of processes alive since round 1) is
#     reported, first round vs last, and in its parts: heap (anonymous: what
#     a leak grows), file (the model's mapped pages) and shared memory
#     (arena pages as they are first touched).
# It prints one line per round and a table; exit 1 when anything was lost,
# duplicated, wrong or leaked.
#
# usage: scripts/chaos.sh [ROUNDS]        (default 5)
#   TIS_BIN (build/tis), TIS_MODEL (the default model), CHAOS_SEED (random),
#   CHAOS_TABLE=FILE: also write the final table there (Markdown);
#   CHAOS_KEEP=1: keep the run's directory (logs, answers) in /tmp.
#   CHAOS_VICTIMS="coord prefill-0 ...": the roles killed (default all; the
#   others survive every round, and their RSS growth is what the table shows).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
bin=${TIS_BIN:-$root/build/tis}
model=${TIS_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
head=$root/configs/heads/smollm2-135m-instruct.tis.safetensors
seed=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
[ -x "$bin" ] || { echo "chaos: no tis binary at $bin (build first, or set TIS_BIN)" >&2; exit 2; }
[ -f "$model" ] || { echo "chaos: no model at $model (scripts/fetch_model.sh, or set TIS_MODEL)" >&2; exit 2; }

# The exact mode (f32 activations and cache, docs/correctness.md). It was
# chosen when a decode step of more than 16 rows took the f32 product and a
# smaller one the 8-bit one, so a request retried into another batch could
# fork from the in-process answer; generated-token steps are batch-invariant
# since (tests/test_forward.c), but this check has not been rerun with the
# defaults yet.
export TIS_QDOT_ACT=f32 TIS_KV_TYPE=f32
tmp=$(mktemp -d /tmp/tis-chaos.XXXXXX)
tag="chaos$$"
front="ipc://$tmp/front" back="ipc://$tmp/back"
policies=(full snapkv tis)
max_new=12

# ---- the dataset and its in-process answers ------------------------------
python3 - "$tmp/d.jsonl" <<'EOF'
import json, sys
items = [("The passkey is 71432. Remember it. The grass is green and the sky is blue.", "What is the passkey?", "71432"),
         ("Alice lives in Paris, Bob lives in Rome and Carol lives in Oslo.", "Where does Bob live?", "Rome"),
         ("The meeting moved from Monday to Thursday at 3 pm in room 12.", "When is the meeting?", "Thursday"),
         ("Water boils at 100 degrees Celsius at sea level; at altitude it boils lower.", "At what temperature does water boil?", "100"),
         ("The red box holds apples, the blue box holds pears, the green box holds plums.", "What is in the blue box?", "pears"),
         ("Tom bought three books and two pens, then gave one book to Ann.", "How many books does Tom have?", "two")]
with open(sys.argv[1], "w") as f:
    for i, (c, q, a) in enumerate(items):
        f.write(json.dumps({"id": f"q{i}", "context": c, "question": q, "answers": [a]}) + "\n")
EOF
n_samples=$(wc -l <"$tmp/d.jsonl")
echo "[chaos] seed $seed, $rounds rounds, $n_samples samples x ${#policies[@]} policies x 2 protocols a round; in $tmp"
if ! "$bin" eval -m "$model" --dataset "$tmp/d.jsonl" --baseline "${policies[@]}" --cache_budgets 0.5 \
     --protocol both --max_new "$max_new" --head "$head" --no_plots --output "$tmp/ref.csv" >"$tmp/ref.log" 2>&1; then
  echo "chaos: the in-process reference run failed ($tmp/ref.log)" >&2
  exit 2
fi

# ---- the processes --------------------------------------------------------
cat >"$tmp/serve.yaml" <<EOF
coordinator:
  max_attempts: 5
EOF
declare -A pid cmd born kills
roles=(coord prefill-0 prefill-1 scorer-0 decode-0 decode-1)
read -r -a victims <<<"${CHAOS_VICTIMS:-${roles[*]}}"
for r in "${roles[@]}"; do
  case $r in
  coord) cmd[$r]="'$bin' serve --config '$tmp/serve.yaml' --front '$front' --back '$back' --prefill 0 --decode 0 --heartbeat_ms 200 --wait_ms 60000" ;;
  *) cmd[$r]="'$bin' worker --role ${r%-*} --connect '$back' --name $tag-$r -m '$model' --head '$head' --arena_mb 64 --heartbeat_ms 200 --threads 1" ;;
  esac
  kills[$r]=0
done
start() { # role (exec: the pid is the process itself)
  eval "exec ${cmd[$1]}" >>"$tmp/$1.log" 2>&1 &
  pid[$1]=$!
  born[$1]=${round:-0}
}
stop_all() {
  for r in "${roles[@]}"; do [ -n "${pid[$r]:-}" ] && kill -TERM "${pid[$r]}" 2>/dev/null; done
  for r in "${roles[@]}"; do [ -n "${pid[$r]:-}" ] && wait "${pid[$r]}" 2>/dev/null; done
}
trap 'stop_all; [ -n "${CHAOS_KEEP:-}" ] || rm -rf "$tmp"' EXIT
for r in "${roles[@]}"; do start "$r"; done
sleep 2

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# RSS in its parts (kB): anonymous (heap: what a leak grows), file (the mapped
# model's pages as they are read) and shared memory (arena pages as they are
# touched: the own arena and the peers' blocks read)
rss_parts() { awk '/^RssAnon/ {a=$2} /^RssFile/ {f=$2} /^RssShmem/ {m=$2} END {print a+0, f+0, m+0}' "/proc/$1/status" 2>/dev/null || echo "0 0 0"; }
declare -A parts_first
declare -A rss_first
tot_req=0 tot_ok=0 tot_err=0 tot_dup=0 tot_lost=0 tot_wrong=0 tot_leak=0 tot_zombie=0 tot_resent=0
fail=0
for ((round = 1; round <= rounds; round++)); do
  # clients: one per (policy, protocol), all at once
  cpids=()
  for p in "${policies[@]}"; do
    for qa in 0 1; do
      name="r$round-$p-$qa"
      flag=""; [ $qa = 1 ] && flag="--query_aware"
      "$bin" client --connect "$front" --dataset "$tmp/d.jsonl" --policy "$p" --budget 0.5 $flag \
        --max_new "$max_new" --timings "$tmp/$name.csv" --timeout_s 240 >"$tmp/$name.out" 2>"$tmp/$name.err" &
      cpids+=($!)
    done
  done
  # kill and restart while any client runs
  running() { for c in "${cpids[@]}"; do kill -0 "$c" 2>/dev/null && return 0; done; return 1; }
  n_kill=0
  while running; do
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.5 + 2.0 * r / 32767 }')"
    running || break
    victim=${victims[$((RANDOM % ${#victims[@]}))]}
    kill -KILL "${pid[$victim]}" 2>/dev/null
    wait "${pid[$victim]}" 2>/dev/null
    kills[$victim]=$((kills[$victim] + 1))
    n_kill=$((n_kill + 1))
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.1 + 0.4 * r / 32767 }')"
    start "$victim"
  done
  for c in "${cpids[@]}"; do wait "$c" 2>/dev/null; done
  # the round's checks
  read -r req ok err dup lost wrong resent <<<"$(python3 - "$tmp" "$round" "${policies[@]}" <<'EOF'
import csv, glob, os, re, sys
tmp, rnd, pols = sys.argv[1], sys.argv[2], sys.argv[3:]
ref = {}
for row in csv.DictReader(open(os.path.join(tmp, "ref.csv"))):
    ref[(row["sample_id"], row["policy"], row["protocol"])] = row["answer"]
ids = [l.split('"id": "')[1].split('"')[0] for l in open(os.path.join(tmp, "d.jsonl"))]
req = ok = err = dup = lost = wrong = resent = 0
reasons = {}
for p in pols:
    for qa in (0, 1):
        name = f"r{rnd}-{p}-{qa}"
        proto = "query_aware" if qa else "agnostic"
        answers = {}
        for line in open(os.path.join(tmp, name + ".out"), encoding="utf-8", errors="replace"):
            if "\t" in line:
                i, a = line.rstrip("\n").split("\t", 1)
                answers.setdefault(i, []).append(a)
        seen = {}
        path = os.path.join(tmp, name + ".csv")
        rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
        for r in rows:
            seen[r["id"]] = seen.get(r["id"], 0) + 1
        errtxt = open(os.path.join(tmp, name + ".err"), encoding="utf-8", errors="replace").read()
        m = re.search(r"(\d+) duplicate results dropped", errtxt)
        dup += int(m.group(1)) if m else 0
        m = re.search(r"lost (\d+) requests", errtxt)
        resent += int(m.group(1)) if m else 0
        for m in re.finditer(r"\] (q\d+): error: (.*)", errtxt):
            why = re.sub(r"\d+", "N", m.group(2))[:110]
            reasons[why] = reasons.get(why, 0) + 1
        for i in ids:
            req += 1
            n = seen.get(i, 0)
            if n == 0:
                lost += 1
                print(f"  lost: {name} {i}", file=sys.stderr)
                continue
            dup += n - 1
            st = [r["status"] for r in rows if r["id"] == i][0]
            if st != "ok":
                err += 1
                continue
            got = answers.get(i, [None])[0]
            want = ref.get((i, p, proto))
            if got == want:
                ok += 1
            else:
                wrong += 1
                print(f"  wrong: {name} {i}: {got!r} vs in-process {want!r}", file=sys.stderr)
for why, n in sorted(reasons.items(), key=lambda x: -x[1]):
    print(f"  error x{n}: {why}", file=sys.stderr)
print(req, ok, err, dup, lost, wrong, resent)
EOF
)"
  # segments: only the live workers' arenas; zombies: none
  leak=0
  for s in /dev/shm/tis-$tag-*; do
    [ -e "$s" ] || continue
    r=${s#/dev/shm/tis-$tag-}
    r=${r%-*} # the segment's random part
    if [ -z "${pid[$r]:-}" ] || ! kill -0 "${pid[$r]}" 2>/dev/null; then leak=$((leak + 1)); echo "  leaked: $s" >&2; fi
  done
  zombie=$(ps -o stat= --ppid $$ 2>/dev/null | grep -c '^Z' || true)
  for r in "${roles[@]}"; do
    [ "${born[$r]}" = 0 ] && [ -z "${rss_first[$r]:-}" ] && rss_first[$r]=$(rss_kb "${pid[$r]}") &&
      parts_first[$r]=$(rss_parts "${pid[$r]}")
  done
  printf '[chaos] round %d: %d kills, %d requests: %d answered as in process, %d errors, %d duplicates, %d lost, %d wrong, %d resent after a coordinator restart; %d leaked segments, %d zombies\n' \
    "$round" "$n_kill" "$req" "$ok" "$err" "$dup" "$lost" "$wrong" "$resent" "$leak" "$zombie"
  tot_req=$((tot_req + req)) tot_ok=$((tot_ok + ok)) tot_err=$((tot_err + err)) tot_dup=$((tot_dup + dup))
  tot_lost=$((tot_lost + lost)) tot_wrong=$((tot_wrong + wrong)) tot_leak=$((tot_leak + leak))
  tot_zombie=$((tot_zombie + zombie)) tot_resent=$((tot_resent + resent))
  [ $((dup + lost + wrong + leak + zombie)) -ne 0 ] && fail=1
done

# survivors' memory, then shut down and look for segments once more
mem=""
for r in "${roles[@]}"; do
  if [ "${born[$r]}" = 0 ] && [ -n "${rss_first[$r]:-}" ]; then
    read -r a0 f0 m0 <<<"${parts_first[$r]}"
    read -r a1 f1 m1 <<<"$(rss_parts "${pid[$r]}")"
    mem+=" $r $((rss_first[$r] / 1024))->$(( $(rss_kb "${pid[$r]}") / 1024 )) MiB"
    mem+=" (heap $((a0 / 1024))->$((a1 / 1024)), file $((f0 / 1024))->$((f1 / 1024)), shm $((m0 / 1024))->$((m1 / 1024))),"
  fi
done
surv=${mem%,}
[ -n "$surv" ] || surv=" none survived"
stop_all
pid=()
sleep 0.5
left=$(find /dev/shm -maxdepth 1 -name "tis-$tag-*" | wc -l)
[ "$left" -ne 0 ] && { fail=1; find /dev/shm -maxdepth 1 -name "tis-$tag-*" -delete; }
tot_leak=$((tot_leak + left))
kl=""
for r in "${roles[@]}"; do kl+="$r ${kills[$r]}, "; done
table=$(cat <<EOF
| rounds | requests | answered as in process | errors (counted) | duplicates | lost | wrong | leaked segments | zombies |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| $rounds | $tot_req | $tot_ok | $tot_err | $tot_dup | $tot_lost | $tot_wrong | $tot_leak | $tot_zombie |

SIGKILLs: ${kl%, }; requests resent after a coordinator restart: $tot_resent;
survivors' RSS (alive since round 1, first round -> last):$surv;
segments left after shutdown: $left; seed $seed.
EOF
)
echo "$table"
[ -n "${CHAOS_TABLE:-}" ] && echo "$table" >"$CHAOS_TABLE"
exit $fail
