#!/usr/bin/env bash
# Hand-off time against the block's bytes, for the two paths a KV block
# takes from a prefill worker to a decode worker (docs/pipeline.md "Workers
# on another host"):
#   shm      the decode worker on the prefill worker's host: it maps the
#            arena and copies the block out;
#   network  the decode worker on "another host": its own network namespace
#            (a veth pair to the first) and its own /dev/shm, so it fetches
#            the block in 1 MiB chunks (CRC-32 each) through the coordinator,
#            CURVE on every tcp socket.
# Both runs use the same coordinator setup (tcp + CURVE, in namespace A), the
# default model, contexts of 128 / 512 / 1024 / 1536 words, policies full and
# snapkv 0.25, one request at a time (the prefill worker is idle when the
# decode worker reads). The decode worker measures the hand-off (from taking
# the job to the block being in its cache: mapping + copy, or every fetch +
# the copy) and the client's --timings CSV records it per request.
# Needs root (ip netns, unshare -m). Usage:
#   scripts/bench_two_hosts.sh [TIS_BINARY] [OUT_DIR]   (about 5 minutes)
set -euo pipefail
root=${TIS_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
tis=$(realpath "${1:-$root/build/tis}")
out=${2:-$root/docs/results/pipeline}
model=$(realpath "${TIS_MODEL:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}")
[ "$(id -u)" = 0 ] || { echo "bench_two_hosts: needs root (network namespaces)" >&2; exit 2; }
mkdir -p "$out"
tmp=$(mktemp -d /tmp/tis-2h-XXXXXX)
a=tis2hb-a-$$ b=tis2hb-b-$$ va=t2ba$$ vb=t2bb$$
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$a" 2>/dev/null || true
  ip netns del "$b" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap "exit 1" INT TERM
ip netns add "$a"
ip netns add "$b"
ip link add "$va" type veth peer name "$vb"
ip link set "$va" netns "$a"
ip link set "$vb" netns "$b"
ip -n "$a" addr add 10.232.0.1/24 dev "$va"
ip -n "$a" link set "$va" up
ip -n "$a" link set lo up
ip -n "$b" addr add 10.232.0.2/24 dev "$vb"
ip -n "$b" link set "$vb" up
ip -n "$b" link set lo up
front=tcp://10.232.0.1:5801 back=tcp://10.232.0.1:5802
"$tis" keygen "$tmp/server" >/dev/null
"$tis" keygen "$tmp/worker" >/dev/null
"$tis" keygen "$tmp/client" >/dev/null
cat "$tmp/worker.pub" "$tmp/client.pub" >"$tmp/allow"

# contexts of 128, 512, 1024 and 1536 words of prose, one question each
python3 - "$tmp/data.jsonl" <<'EOF'
import json, sys, glob
words = []
for f in sorted(glob.glob("/usr/share/common-licenses/GPL-3")) + sorted(glob.glob("/usr/share/common-licenses/Apache-2.0")):
    words += open(f, encoding="utf-8", errors="replace").read().split()
with open(sys.argv[1], "w") as o:
    for n in (128, 512, 1024, 1536):
        for k in range(1):
            ctx = " ".join(words[k * 97: k * 97 + n])
            o.write(json.dumps({"id": f"w{n}-{k}", "context": ctx, "question": "What is this text about?"}) + "\n")
EOF

csv=$out/two_hosts_handoff.csv
echo "path,policy,budget,request,kv_bytes,handoff_s" >"$csv"
for path in shm network; do
  ip netns exec "$a" "$tis" serve --front "$front" --back "$back" --key "$tmp/server.key" --allow "$tmp/allow" \
    -m "$model" --prefill 1 --decode 0 --arena_mb 512 --heartbeat_ms 500 >"$tmp/serve-$path.log" 2>&1 &
  pids+=($!)
  if [ "$path" = shm ]; then # the prefill worker's host: namespace A, the same /dev/shm
    ip netns exec "$a" "$tis" worker --role decode --connect "$back" --name bench-decode -m "$model" \
      --key "$tmp/worker.key" --server_key "$tmp/server.pub" >"$tmp/decode-$path.log" 2>&1 &
  else # another host: namespace B and a /dev/shm of its own
    ip netns exec "$b" unshare -m sh -c 'mount -t tmpfs tmpfs /dev/shm && exec "$0" "$@"' \
      "$tis" worker --role decode --connect "$back" --name bench-decode -m "$model" \
      --key "$tmp/worker.key" --server_key "$tmp/server.pub" >"$tmp/decode-$path.log" 2>&1 &
  fi
  pids+=($!)
  for pb in ${BENCH_POLICIES:-full:1 snapkv:0.25}; do
    set -- "${pb%%:*}" "${pb#*:}"
    ip netns exec "$b" "$tis" client --connect "$front" --key "$tmp/client.key" --server_key "$tmp/server.pub" \
      --dataset "$tmp/data.jsonl" --policy "$1" --budget "$2" --max_new 4 --concurrency 1 --quiet \
      --timings "$tmp/t.csv" --timeout_s 900 >/dev/null ||
      { echo "bench_two_hosts: the client failed ($path, $1 $2); logs:" >&2; tail -n 20 "$tmp"/*.log >&2; exit 1; }
    python3 - "$tmp/t.csv" "$path" "$1" "$2" >>"$csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    print(f"{sys.argv[2]},{sys.argv[3]},{sys.argv[4]},{r['id']},{r['kv_bytes']},{r['handoff_s']}")
EOF
  done
  grep -h "over the network" "$tmp/decode-$path.log" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done

# the table: per block size, the hand-off of each path and its rate
python3 - "$csv" <<'EOF'
import csv, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1])))
by = defaultdict(dict)
for r in rows:
    key = (int(r["kv_bytes"]), r["request"], r["policy"])
    by[key][r["path"]] = float(r["handoff_s"])
print("| block | policy | request | shm hand-off | network hand-off | network rate |")
print("| ---: | --- | --- | ---: | ---: | ---: |")
for (nb, req, pol), d in sorted(by.items()):
    s, n = d.get("shm"), d.get("network")
    rate = f"{nb / n / 1e6:.0f} MB/s" if n else "-"
    fmt = lambda x: f"{x * 1e3:.2f} ms" if x is not None else "-"
    print(f"| {nb / 2**20:.2f} MiB | {pol} | {req} | {fmt(s)} | {fmt(n)} | {rate} |")
EOF
