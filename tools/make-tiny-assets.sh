#!/usr/bin/env bash
# Regenerates assets/tiny/ — the tiny CLIP vision tower and the tiny multilingual Qwen2 LM (with its byte-level
# BPE tokenizer) that `parrot demo` starts from — with `parrot` commands only. Deterministic for the seeds below
# (the same machine gives the same weights; thread timing does not enter the arithmetic).
#
#   tools/make-tiny-assets.sh [OUT_DIR]      # default OUT_DIR: assets/tiny
#
# Environment: VISION_STEPS (default 1500), LM_STEPS (default 300), WORK (scratch folder, kept; default a temp dir,
# deleted on exit), PARROT (the command to run, default: the Release build of src/Parrot.Cli, built first).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-assets/tiny}
VISION_STEPS=${VISION_STEPS:-1500}
LM_STEPS=${LM_STEPS:-300}
if [[ -z "${WORK:-}" ]]; then
  # Our own scratch folder (a whole world and a tokenizer: 27 MB even for a 2-step run) goes when the script ends,
  # however it ends; a WORK given by the caller is theirs and stays.
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
fi
if [[ -z "${PARROT:-}" ]]; then
  dotnet build src/Parrot.Cli -c Release -v quiet -nologo >/dev/null
  PARROT="dotnet src/Parrot.Cli/bin/Release/net10.0/parrot.dll"
fi
mkdir -p "$OUT"
LOG="$OUT/make-tiny-assets.log"
: > "$LOG"
run() {  # run a parrot command, echo it and its wall time into the log
  echo "\$ parrot $*" | tee -a "$LOG"
  local start=$SECONDS
  $PARROT "$@" 2>&1 | tee -a "$LOG" | grep -v '^step [0-9]*[1-9]: ' || return 1
  echo "# wall time: $((SECONDS - start)) s" | tee -a "$LOG"
}

# 1. A world of its own (seed 7, not the demo's 42): 4,000 English-captioned, labelled 96-px scenes for the
#    tower, and 3,000 scenes described in all six languages (18,000 documents) for the tokenizer and the LM.
run make-world --out "$WORK/world" --seed 7 --size 96 --stage1 4000 --stage2 0 --bench 0 --text 3000

# 2. The vision tower: CLIP ViT, 96 px, 32-px patches (a 3×3 grid, one patch per slot of the world), width 96,
#    3 layers; heads on the class token (background, count, objects per shape and per colour) and on each patch
#    (shape, colour, size of the object there). The last 200 images are held out for the accuracies.
run pretrain-vision --world "$WORK/world" --out "$OUT/vision" --steps "$VISION_STEPS" --batch 32 --lr 3e-3 --seed 1 \
  --valid 200 --eval-every 250 --bf16-weights

# 3. The tokenizer: byte-level BPE, 2,048 ids (256 bytes + merges + <|endoftext|> <|im_start|> <|im_end|>).
run train-tokenizer --input "$WORK/world/text/lm.jsonl" --jsonl-field text --vocab-size 2048 --out "$WORK/tokenizer.json"

# 4. The LM: a fresh Qwen2 (width 128, 4 layers, 4 heads / 2 kv heads, tied embeddings; tools/tiny-assets/lm-config.json)
#    pre-trained on the six-language text in windows of 128 tokens; the last 64 windows are held out.
run train-lm --init tools/tiny-assets/lm-config.json --tokenizer "$WORK/tokenizer.json" --text "$WORK/world/text/lm.jsonl" \
  --seq-len 128 --steps "$LM_STEPS" --batch 16 --lr 3e-3 --warmup-steps 15 --max-grad-norm 1 --schedule cosine \
  --shuffle --seed 1 --valid-windows 64 --log "$OUT/lm/train_log.jsonl" --out "$OUT/lm" --out-dtype bf16

du -sh "$OUT/vision" "$OUT/lm" | tee -a "$LOG"
