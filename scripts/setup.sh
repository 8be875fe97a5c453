#!/usr/bin/env bash
# Sets up tis on a fresh Debian machine: the packages it needs (only those
# missing), the default model (scripts/fetch_model.sh), and a release build
# in build/. Safe to run again: each step is skipped when already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian packages: compiler, cmake, OpenBLAS, cJSON, gnuplot (report plots),
# ZeroMQ + protobuf-c (the pipeline's messages), libyaml (serve configs), libmicrohttpd
# (tis serve --http), curl (its tests), Python (for the model fetch and the golden-data script),
# clang (libFuzzer, for scripts/fuzz.sh).
pkgs=(build-essential cmake pkg-config libopenblas-dev libcjson-dev gnuplot-nox
      libzmq3-dev libprotobuf-c-dev protobuf-c-compiler libyaml-dev libmicrohttpd-dev curl clang)
# python3 + pip may come from elsewhere (pyenv): ask apt only when absent.
if ! { command -v python3 && python3 -m pip --version; } >/dev/null 2>&1; then
  pkgs+=(python3 python3-pip)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash "$root/scripts/fetch_model.sh"

echo "[setup] building (release) in build/"
cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
if ! cmake --build "$root/build" -j "$(nproc)" >"$root/build/build.log" 2>&1; then
  grep -E 'error|Error' "$root/build/build.log" | head -40 >&2
  echo "[setup] error: the build failed (full log: build/build.log)" >&2
  exit 1
fi
grep -E 'warning' "$root/build/build.log" || true
echo "[setup] ready: build/tis"
