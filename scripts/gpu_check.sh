#!/usr/bin/env bash
# gpu_check.sh: everything the lent GPU machine has to do for issue 16, in ONE unattended call
# of at most 8 minutes: configure with nvcc for the machine's GPU, build, the CUDA tests, the
# end-to-end greedy check (CPU vs CUDA), and scripts/bench_gpu.sh (tis vs PyTorch, CUDA IPC
# hand-off). Results: $OUT/gpu/ (docs/results/gpu/README.md says what each file holds).
#
# ---- How to run it (a session whose task is lent a GPU: the device tool's `status` says) ----
# 1. Here, on the host, where apt works (the GPU machine can install nothing):
#        bash scripts/gpu_deps.sh pack          # -> .gpu/deps.tar.xz, 11 MB; .gpu/ is git-ignored
#    and check that the tree stays under the tool's 64 MiB:
#        git ls-files -z | xargs -0 du -cb | tail -1    # tracked files (30 MB in Nov 2026)
#        du -b .gpu/deps.tar.xz
#    Untracked files that git does not ignore travel too: keep the checkout clean.
# 2. One call of the device tool (it runs in the repo root of a copy of the working tree):
#        run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#    carry names the ignored folder .gpu so that the library bundle travels. The default
#    model (models/, 98 MB, ignored) can NOT travel: it is over the tool's 64 MiB on its own;
#    the run generates a model of its shapes and Q4_1 type instead (tis gen-model; same speed,
#    random values), for the benchmark and the greedy check.
# 3. The files come back under the tool's files_at: gpu/summary.md first. Commit what was
#    measured under docs/results/gpu/ (results.md, results.csv, ipc.csv, qgemv.csv, summary.md).
#    timeout_s=540 leaves 60 s over this script's own 480 s deadline, and the 15 minutes of
#    device time a session has leave room for a second call after a fix.
#
# The greedy check and the tis rows of the benchmark call `tis generate|bench --device cuda:0`
# (the device-resident forward, issue 16 item 1).
#
# ---- Here, without a GPU ----
#    bash scripts/gpu_check.sh --dry-run        # OUT defaults to results/gpu-dry
# runs the same steps on this machine: the build, the CUDA tests (they skip: exit 77), the
# greedy check's CPU side, bench_gpu.sh --cpu (small sizes); GPU steps are reported skipped.
#
# Every step runs under `timeout`, a failed step is recorded and the next one runs;
# $OUT/gpu/summary.md is written first and rewritten after each step, and the results and a
# tarball of all logs are refreshed after each step too, so a call cut short still returns
# what ran. At most 8 files come back from $OUT (the tool's limit): summary.md, results.md,
# results.csv, ipc.csv, qgemv.csv, logs.tar.gz.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
T_START=$(date +%s)
DEADLINE=$((T_START + ${GPU_CHECK_SECONDS:-480}))
OUTDIR=${OUT:-$root/results/gpu-dry}/gpu
BUILD=${BUILD:-$root/build-gpu}
WORK=${WORK:-/tmp/tis-gpu-check}
LOGS=$WORK/logs
rm -rf "$LOGS" "$WORK/bench" "$WORK/extra.md" # generated models (*.gguf) are kept
mkdir -p "$OUTDIR" "$LOGS"
JOBS=$(nproc)
STEPS=()   # "name|status|seconds"
gpu=0

s_summary() {
  {
    echo "# gpu_check.sh $([ $dry = 1 ] && echo '--dry-run (no GPU: GPU steps skipped)')"
    echo
    echo "started $(date -u -d @"$T_START" '+%Y-%m-%d %H:%M:%S UTC'), $(($(date +%s) - T_START)) s so far, deadline $((DEADLINE - T_START)) s; commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "| step | status | seconds |"
    echo "|---|---|---|"
    for s in "${STEPS[@]}"; do echo "| ${s//|/ | } |"; done
    [ -f "$WORK/extra.md" ] && { echo; cat "$WORK/extra.md"; }
  } >"$OUTDIR/summary.md"
}

# what comes back: the summary, the bench tables, and every log in one tarball
s_sync() {
  s_summary
  for f in results.md results.csv ipc.csv; do [ -f "$WORK/bench/$f" ] && cp "$WORK/bench/$f" "$OUTDIR/"; done
  [ -f "$LOGS/qgemv.csv" ] && cp "$LOGS/qgemv.csv" "$OUTDIR/"
  tar -C "$WORK" -czf "$OUTDIR/logs.tar.gz" --exclude='*.gguf' logs $([ -d "$WORK/bench" ] && echo bench) 2>/dev/null
}

# step NAME SECONDS CMD...: CMD under timeout (cut to the deadline), its output in logs/NAME.log
step() {
  local name=$1 secs=$2
  shift 2
  local left=$((DEADLINE - $(date +%s))) t0=$SECONDS rc=0
  if [ $left -lt 5 ]; then
    STEPS+=("$name|skipped: out of time|0")
    s_sync
    return 124
  fi
  [ $left -lt "$secs" ] && secs=$left
  echo "[gpu_check] $name (at most ${secs}s)"
  timeout --kill-after=5 "$secs" "$@" >"$LOGS/$name.log" 2>&1 || rc=$?
  local st=ok
  [ $rc -ne 0 ] && st="FAILED (exit $rc): $(tail -n 3 "$LOGS/$name.log" | tr '\n|' '  ' | cut -c1-240)"
  [ $rc -eq 124 ] && st="TIMED OUT after ${secs}s"
  [ $rc -eq 77 ] && st="skipped: $(grep -m1 -i skipped "$LOGS/$name.log" | cut -c1-200)"
  STEPS+=("$name|$st|$((SECONDS - t0))")
  echo "[gpu_check] $name: $st"
  s_sync
  return $rc
}

skip() { STEPS+=("$1|skipped: $2|0"); s_sync; }

s_env() {
  echo "host: $(uname -a)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || echo "nvidia-smi: none"
  command -v nvcc && nvcc --version | tail -2 || echo "nvcc: not on PATH"
  local ch
  ch=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  ls "$ch"/lib64/libcublas* "$ch"/targets/*/lib/libcublas* "$ch"/include/cublas_v2.h 2>&1 | head -4
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available())' ||
    echo "python3: no torch"
  for m in openblas libcjson yaml-0.1 libprotobuf-c libzmq libmicrohttpd; do
    pkg-config --exists $m 2>/dev/null && echo "pkg-config $m: the machine's" || echo "pkg-config $m: missing"
  done
}

# the build's libraries: the machine's when pkg-config knows them all, else the carried bundle
s_deps() {
  local need=0
  for m in openblas libcjson yaml-0.1 libprotobuf-c libzmq libmicrohttpd; do pkg-config --exists $m 2>/dev/null || need=1; done
  command -v protoc-c >/dev/null || need=1
  if [ $need = 0 ] && [ -z "${GPU_CHECK_BUNDLE:-}" ]; then echo "all libraries are the machine's"; return 0; fi
  bash scripts/gpu_deps.sh unpack .gpu/deps.tar.xz "$WORK/deps"
}

s_configure() {
  local args=()
  [ -f "$WORK/deps/cmake.args" ] && mapfile -t args <"$WORK/deps/cmake.args"
  [ -f "$WORK/deps/env.sh" ] && . "$WORK/deps/env.sh"
  local arch=90 gen=()
  if [ $gpu = 1 ]; then # the machine's own GPU: compute capability 9.0 -> 90
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')
    [ -n "$arch" ] || arch=90
  fi
  command -v ninja >/dev/null && gen=(-G Ninja)
  [ -f "$BUILD/CMakeCache.txt" ] && gen=() # a build folder keeps its generator
  cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTIS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
    "${args[@]}"
}

# tis and every CUDA test (each tests/test_cuda_*.c is one; ctest -R cuda runs them all)
TARGETS="tis $(cd "$root/tests" && ls test_cuda_*.c | sed 's/\.c$//' | tr '\n' ' ')"

# The greedy tokens of the CUDA path against the CPU path: same model, same prompts, f32 KV on
# both (the CUDA attention reads f32 caches) and f32 activations on the CPU (TIS_QDOT_ACT=f32:
# the CPU's default 8-bit decode activations would differ from the device's f32 by design).
s_greedy() {
  local m=$1 side=$2 i=0 fail=0
  local prompts=("The capital of France is" "1, 2, 3, 4, 5," "def fibonacci(n):")
  for p in "${prompts[@]}"; do
    i=$((i + 1))
    if [ "$side" = cpu ]; then
      TIS_QDOT_ACT=f32 "$BUILD/tis" generate -m "$m" -p "$p" -n 32 --temp 0 --kv_type f32 --quiet \
        >"$LOGS/greedy_cpu_$i.txt" || fail=1
    else
      "$BUILD/tis" generate -m "$m" -p "$p" -n 32 --temp 0 --kv_type f32 --quiet --device cuda:0 \
        >"$LOGS/greedy_cuda_$i.txt" || fail=1
    fi
  done
  [ "$side" = cpu ] && return $fail
  for j in $(seq 1 $i); do
    if cmp -s "$LOGS/greedy_cpu_$j.txt" "$LOGS/greedy_cuda_$j.txt"; then
      echo "prompt $j: CUDA greedy text equals the CPU's ($(wc -c <"$LOGS/greedy_cpu_$j.txt") bytes)"
    else
      echo "prompt $j: DIFFERS: $(cmp "$LOGS/greedy_cpu_$j.txt" "$LOGS/greedy_cuda_$j.txt" 2>&1 | head -1)"
      fail=1
    fi
  done
  return $fail
}

# ---------------------------------------------------------------------------------------------
# the steps that are functions run as `bash -c NAME` under timeout: they and what they read travel
export -f s_env s_deps s_configure s_greedy
export root WORK BUILD LOGS dry
s_summary
step env 30 bash -c s_env
if [ $dry = 0 ] && nvidia-smi -L >/dev/null 2>&1; then gpu=1; fi
export gpu
[ $gpu = 1 ] || echo "no GPU here: GPU steps are skipped" >"$WORK/extra.md"
step deps 60 bash -c s_deps
[ -f "$WORK/deps/env.sh" ] && . "$WORK/deps/env.sh"
# libcudart / libcublas of the toolkit nvcc belongs to (the tests link them as shared libraries)
if command -v nvcc >/dev/null; then
  cuda_home=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
  export LD_LIBRARY_PATH="$cuda_home/lib64:$cuda_home/targets/x86_64-linux/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
step configure 60 bash -c s_configure
# shellcheck disable=SC2086
step build 200 cmake --build "$BUILD" -j "$JOBS" --target $TARGETS
# without a GPU they run too and skip (exit 77) after their host-side checks
step ctest_cuda 90 ctest --test-dir "$BUILD" -R cuda --output-on-failure
{ echo "ctest -R cuda:"; echo; grep -E "tests passed|Test +#|\(Skipped\)|\(Failed\)" "$LOGS/ctest_cuda.log" | sed 's/^/    /'; echo; } \
  >>"$WORK/extra.md" 2>/dev/null
s_sync
# the quantised decode GEMV against cuBLAS bf16 / f32 at real matrix shapes (which weight path
# the device forward should take: issue 16 item 1)
if [ $gpu = 1 ]; then
  step qgemv_bench 60 "$BUILD/test_cuda_qgemv" --bench "$LOGS/qgemv.csv"
else
  skip qgemv_bench "no GPU"
fi
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$model" ]; then
  model=$WORK/smollm2-135m-q4_1.gguf
  [ -f "$model" ] || step gen_model 60 "$BUILD/tis" gen-model --config smollm2-135m --type q4_1 --out "$model"
fi
step greedy_cpu 60 bash -c 's_greedy "$0" cpu' "$model"
if [ $gpu = 1 ]; then step greedy_cuda 60 bash -c 's_greedy "$0" cuda' "$model"; else skip greedy_cuda "no GPU"; fi
# CUDA workers in the pipeline: the same answers as cpu workers, the IPC hand-off times (scripts/gpu_pipeline_check.sh)
if [ $gpu = 1 ]; then step pipeline_cuda 120 bash scripts/gpu_pipeline_check.sh "$BUILD/tis" "$model" "$WORK/bench"; else skip pipeline_cuda "no GPU"; fi
[ -f "$WORK/bench/pipeline.md" ] && { cat "$WORK/bench/pipeline.md"; echo; } >>"$WORK/extra.md"
mode=()
[ $gpu = 1 ] || mode=(--cpu)
export DEADLINE BUILD
step bench_gpu 600 env RESULTS="$WORK/bench" WORK="$WORK" bash scripts/bench_gpu.sh "${mode[@]}"
[ -f "$WORK/bench/steps.csv" ] && { echo "bench_gpu.sh steps:"; echo; sed 's/^/    /' "$WORK/bench/steps.csv"; } >>"$WORK/extra.md"
s_sync
echo "[gpu_check] done in $(($(date +%s) - T_START)) s: $OUTDIR/summary.md"
