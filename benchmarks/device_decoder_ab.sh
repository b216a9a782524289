#!/usr/bin/env bash
# Device run (one GPU): two residual-decoder fine-tunes side by side on the same data and
# schedule, A with the full-resolution LQ skip (SKIP=true) and B without, both restarted as
# the identity on bicubic frames; results in $OUT/skip and $OUT/plain. Settings as in
# device_finetune_decoder.sh (FT_MIN, STEPS, BICUBIC_PROB, LR, ECHO; WORKERS per run).
set -u
SIDE=${MAX_SHORT_SIDE:-0}
DATA=$(realpath "${DATA:-.carry/data}")
mkdir -p runs/ft
[ -d "runs/ft/frames_$SIDE" ] || PYTHONPATH=$PWD python -m flashvsr.train data cache "$DATA/manifest.jsonl" --root "$DATA" -o "runs/ft/frames_$SIDE" --max-short-side "$SIDE"
export RESTART=${RESTART:-true} WORKERS=${WORKERS:-7}
SKIP=true TAG=${TAG:-ab}_skip DEST=$OUT/skip bash benchmarks/device_finetune_decoder.sh > "$OUT/skip.txt" 2>&1 &
SKIP=false TAG=${TAG:-ab}_plain DEST=$OUT/plain bash benchmarks/device_finetune_decoder.sh > "$OUT/plain.txt" 2>&1 &
wait
nvidia-smi --query-gpu=name,memory.used --format=csv
tail -n 8 "$OUT/skip.txt" "$OUT/plain.txt"
