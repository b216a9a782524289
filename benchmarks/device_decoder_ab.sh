#!/usr/bin/env bash
# Device run (one GPU): two residual-decoder fine-tunes side by side on the same data and
# schedule, arm A with the settings in A_ENV and arm B with B_ENV (words like SKIP=true or
# SETS=decoder_loss.temporal_weight=1,data.soften_prob=0.3; see device_finetune_decoder.sh); results in
# $OUT/a and $OUT/b. Shared settings from the env as in device_finetune_decoder.sh (FT_MIN,
# STEPS, BICUBIC_PROB, LR, ECHO, RESTART, INIT; WORKERS per arm, default 7).
set -u
SIDE=${MAX_SHORT_SIDE:-0}
DATA=$(realpath "${DATA:-.carry/data}")
mkdir -p runs/ft
[ -d "runs/ft/frames_$SIDE" ] || PYTHONPATH=$PWD python -m flashvsr.train data cache "$DATA/manifest.jsonl" --root "$DATA" -o "runs/ft/frames_$SIDE" --max-short-side "$SIDE"
export WORKERS=${WORKERS:-7}
env ${A_ENV:-} TAG=${TAG:-ab}_a DEST=$OUT/a bash benchmarks/device_finetune_decoder.sh > "$OUT/a.txt" 2>&1 &
env ${B_ENV:-} TAG=${TAG:-ab}_b DEST=$OUT/b bash benchmarks/device_finetune_decoder.sh > "$OUT/b.txt" 2>&1 &
wait
tail -n 8 "$OUT/a.txt" "$OUT/b.txt"
