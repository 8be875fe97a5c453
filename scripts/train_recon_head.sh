#!/usr/bin/env bash
# A per-head reconstruction head (docs/head.md "Per-head heads") for MODEL,
# trained on generic text only, never on the benchmark haystacks (those are
# GPL-3 text from Debian's base-files and the Apache-2.0 licence): prose
# documentation from /usr/share/doc (README / *.md / *.txt / *.rst; no
# copyright, licence or compressed files, and no file that quotes the GNU GPL
# or the Apache licence), man pages rendered to text, and Python's own
# library sources (code). /usr/share/common-licenses is never read.
#
# Each file contributes its first FILE_BYTES bytes, named so that the three
# sources interleave in the corpus order (tis label --corpus reads names in
# sorted order and stops at --n_samples). Then
#   tis label --corpus ... --target recon   (the agnostic state, session_recon)
#   tis train --target recon --outputs per_head --head mlp
# writes configs/heads/<model-name>.recon.safetensors (+ _metrics.csv).
#
# Features: the residual stream entering LAYER, by default the middle layer
# (n_layer / 2): on SmolLM2, the same 32 samples, layer 15 gave validation
# per-stream recall@10% 0.486 and global 0.821 against 0.369 / 0.780 for
# the features after the last layer (docs/head.md).
#
# Usage: scripts/train_recon_head.sh MODEL [N_SAMPLES] [CONTEXT_TOKENS] [LAYER]
# Env: EPOCHS, LR, PATIENCE (training: 40, 3e-3, 4), POSITIONS=1 (the token's place in the context as two
# more inputs: tis train --positions), VAL=N (validate on N pieces of the corpus files after the
# training pieces' instead of a share of them), TIS (binary, default build/tis), WORK (labels, default
# results/recon-labels/<model-name>), HIDDEN (mlp width, 128), OUT (checkpoint).
# CALIBRATE=1: tis train --calibrate (docs/head.md "Calibration").
# TARGET=selfinfo: self-information labels (tis label --target selfinfo: each token's word
# self-information, one more pass with every position's logits) and a one-output head that learns
# their ranking (tis train --target selfinfo; docs/head.md "A self-information head"); WORK
# defaults to results/recon-labels/<model-name>-selfinfo-layer<L>, OUT to
# configs/heads/<model-name>.selfinfo.safetensors; STREAM_WEIGHTS and CALIBRATE do not apply.
# REPEATS=1: tis train --repeats, whether the text around a token occurs earlier / later in the
# context as two more inputs (docs/head.md "Repeated text"). STREAM_WEIGHTS=inv_sd|inv_var: tis
# train --stream_weights (each stream's squared errors weighed by its targets' spread).
# LABEL_LPOOL=N: tis train --label_lpool N (each target the maximum over its token and the N-1
# after it: the head learns the span press's +lpoolN gives a score; docs/head.md "Spans").
# REPEAT=N: N more label pieces that repeat themselves (scripts/repeat_corpus.py, from the corpus
# files numbered REPEAT_FROM=300 on, past the training and validation ones; docs/head.md "Where the
# heads lose needles"), labelled into WORK/rep-labels and trained on beside the corpus pieces.
# REPEAT_VAL=N (with REPEAT): N such pieces from the corpus files numbered REPEAT_VAL_FROM=460 on
# (seed 11) validate beside the VAL pieces (WORK/rep-val-labels).
# REPEAT_IDS=N: N more repeating pieces (seed 7) whose inserted lines come half the time from
# dpkg's status, /etc/services and md5sums lists (repeat_corpus.py --insert-from): numbers and
# hashes said once, which copy layers score highest; with REPEAT_VAL, REPEAT_VAL such pieces
# (seed 13) validate too (WORK/ids-labels, WORK/ids-val-labels).
set -euo pipefail
case ${1:-} in ""|-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?usage: scripts/train_recon_head.sh MODEL [N_SAMPLES] [CONTEXT_TOKENS] [LAYER]}
n_samples=${2:-240}
ctx=${3:-1024}
tis=${TIS:-$root/build/tis}
n_layer=$("$tis" info "$model" | awk '$1 == "layers" { print $2 }')
layer=${4:-$((n_layer / 2))}
# the model's slug, by the one rule tis eval uses to find its heads (tis info's "default head")
name=$("$tis" info "$model" | sed -n 's|^default head *configs/heads/\(.*\)\.tis\.safetensors.*|\1|p')
[ -n "$name" ] || { echo "train_recon_head: tis info names no default head for $model" >&2; exit 1; }
target=${TARGET:-recon}
case $target in
  recon) work=${WORK:-$root/results/recon-labels/$name-layer$layer}
         out=${OUT:-$root/configs/heads/$name.recon.safetensors}
         train_args=(--target recon --outputs per_head --stream_weights "${STREAM_WEIGHTS:-none}")
         [ "${CALIBRATE:-0}" = 1 ] && train_args+=(--calibrate) ;;
  selfinfo) work=${WORK:-$root/results/recon-labels/$name-selfinfo-layer$layer}
         out=${OUT:-$root/configs/heads/$name.selfinfo.safetensors}
         train_args=(--target selfinfo) ;;
  *) echo "train_recon_head: TARGET=$target (recon or selfinfo)" >&2; exit 2 ;;
esac
hidden=${HIDDEN:-128}
file_bytes=${FILE_BYTES:-7000}
per_source=${PER_SOURCE:-200}
corpus=$work/corpus
mkdir -p "$corpus"

# ---- the corpus (deterministic: sorted lists, fixed counts) ----
if [ ! -f "$corpus/.done" ]; then
  rm -rf "$corpus" && mkdir -p "$corpus"
  licence_re='GNU (Lesser |Library |Affero )?General Public License|Apache License|Permission is hereby granted'
  i=0
  # prose
  find /usr/share/doc -type f \( -name '*.md' -o -name '*.txt' -o -name '*.rst' -o -name 'README*' \) \
      ! -name '*.gz' ! -iname '*licen[cs]e*' ! -iname '*copying*' ! -name copyright 2>/dev/null | LC_ALL=C sort |
    while read -r f; do
      [ "$(stat -c %s "$f")" -ge 3000 ] || continue
      grep -Eq "$licence_re" "$f" && continue
      printf -v n '%05d' $((i * 3)); head -c "$file_bytes" "$f" > "$corpus/$n-doc-$(basename "$f")"
      i=$((i + 1)); [ $i -lt "$per_source" ] || break
    done || true # (break: the listing gets SIGPIPE)
  # man pages as text
  i=0
  find /usr/share/man/man1 /usr/share/man/man5 /usr/share/man/man8 -type f -name '*.gz' 2>/dev/null | LC_ALL=C sort |
    while read -r f; do
      txt=$(MANWIDTH=80 man -l "$f" 2>/dev/null | col -bx 2>/dev/null | head -c "$file_bytes") || continue
      [ ${#txt} -ge 3000 ] || continue
      grep -Eq "$licence_re" <<<"$txt" && continue
      printf -v n '%05d' $((i * 3 + 1)); printf '%s\n' "$txt" > "$corpus/$n-man-$(basename "$f" .gz)"
      i=$((i + 1)); [ $i -lt "$per_source" ] || break
    done || true # (break: the listing gets SIGPIPE)
  # code: the Python library
  i=0
  py=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
  find "$py" -maxdepth 1 -type f -name '*.py' | LC_ALL=C sort |
    while read -r f; do
      [ "$(stat -c %s "$f")" -ge 3000 ] || continue
      grep -Eq "$licence_re" "$f" && continue
      printf -v n '%05d' $((i * 3 + 2)); head -c "$file_bytes" "$f" > "$corpus/$n-code-$(basename "$f")"
      i=$((i + 1)); [ $i -lt "$per_source" ] || break
    done || true # (break: the listing gets SIGPIPE)
  touch "$corpus/.done"
fi
echo "[$target] corpus: $(ls "$corpus" | wc -l) files in $corpus" >&2

# ---- labels (resumable) and the head ----
"$tis" label -m "$model" --corpus "$corpus" --context_tokens "$ctx" --n_samples "$n_samples" \
  --target "$target" --layer "$layer" --shard_size 16 --output "$work/labels"
# VAL=N: validate on N pieces of the corpus files after the last one the
# training pieces used (tis train --val_labels), not on a share of them
val_args=()
if [ "${VAL:-0}" -gt 0 ]; then
  last=$(tail -1 "$work/labels/manifest.jsonl" | sed -n 's|.*/\([0-9]\{5\}\)-[^/]*#[0-9]*",.*|\1|p')
  [ -n "$last" ] || { echo "train_recon_head: cannot read the last training file from $work/labels/manifest.jsonl" >&2; exit 1; }
  mkdir -p "$work/val-corpus"
  for f in "$corpus"/*; do
    b=$(basename "$f")
    [[ "${b:0:5}" > "$last" ]] && ln -sfn "$f" "$work/val-corpus/$b"
  done
  "$tis" label -m "$model" --corpus "$work/val-corpus" --context_tokens "$ctx" --n_samples "$VAL" \
    --target "$target" --layer "$layer" --shard_size 16 --output "$work/val-labels"
  val_args=(--val_labels "$work/val-labels")
fi
# REPEAT=N / REPEAT_IDS=N: pieces that repeat themselves, labelled the same way.
# rep_set NAME N FIRST SEED [--insert-from FILE...]: N pieces of corpus files FIRST on in
# WORK/NAME-corpus, labelled into WORK/NAME-labels
rep_set() {
  local name=$1 n=$2 first=$3 seed=$4
  shift 4
  [ -f "$work/$name-corpus/.done" ] || {
    rm -rf "$work/$name-corpus"
    python3 "$root/scripts/repeat_corpus.py" "$corpus" "$work/$name-corpus" "$n" "$first" "$seed" "$@"
    touch "$work/$name-corpus/.done"
  }
  "$tis" label -m "$model" --corpus "$work/$name-corpus" --context_tokens "$ctx" --n_samples "$n" \
    --target "$target" --layer "$layer" --shard_size 16 --output "$work/$name-labels"
}
# the lines REPEAT_IDS inserts: dpkg's status, /etc/services and the first 20 md5sums lists
# (numbers, versions, hashes; no licence text)
ids_from=(--insert-from /var/lib/dpkg/status /etc/services)
ids_from+=($(ls /var/lib/dpkg/info/*.md5sums 2>/dev/null | LC_ALL=C sort | head -20))
label_dirs=("$work/labels")
add_val() { [ ${#val_args[@]} -gt 0 ] || val_args=(--val_labels); val_args+=("$1"); }
if [ "${REPEAT:-0}" -gt 0 ]; then
  rep_set rep "$REPEAT" "${REPEAT_FROM:-300}" 5
  label_dirs+=("$work/rep-labels")
  if [ "${REPEAT_VAL:-0}" -gt 0 ]; then
    rep_set rep-val "$REPEAT_VAL" "${REPEAT_VAL_FROM:-460}" 11
    add_val "$work/rep-val-labels"
  fi
fi
if [ "${REPEAT_IDS:-0}" -gt 0 ]; then
  rep_set ids "$REPEAT_IDS" "${REPEAT_FROM:-300}" 7 "${ids_from[@]}"
  label_dirs+=("$work/ids-labels")
  if [ "${REPEAT_VAL:-0}" -gt 0 ]; then
    rep_set ids-val "$REPEAT_VAL" "${REPEAT_VAL_FROM:-460}" 13 "${ids_from[@]}"
    add_val "$work/ids-val-labels"
  fi
fi
"$tis" train --labels "${label_dirs[@]}" "${val_args[@]}" "${train_args[@]}" --head mlp --hidden "$hidden" \
  --epochs "${EPOCHS:-40}" --lr "${LR:-3e-3}" --patience "${PATIENCE:-4}" --batch 4 --seed 1 \
  $([ "${POSITIONS:-0}" = 1 ] && echo --positions) \
  $([ "${REPEATS:-0}" = 1 ] && echo --repeats) ${LABEL_LPOOL:+--label_lpool "$LABEL_LPOOL"} --output "$out"
echo "[$target] wrote $out" >&2
