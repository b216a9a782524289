#!/usr/bin/env bash
# Device run (one GPU): fine-tune the bundled model's residual TC decoder on its own student's
# latents (phase 3 of scripts/train_small.sh, continued from the shipped decoder), and bring
# back the EMA decoder (final.pt), the best-scoring one on the validation bands (best.pt) and
# the metrics. Run again with the same settings to continue (the trainer resumes the run).
# Carries .carry/ft/student (the bundled model folder without its VAE) and the data pack
# (.carry/data, made by scripts/make_data_pack.py; or DATA=<a copy of it on the machine>).
# Every LQ (plain bicubic and RealBasicVSR alike) is degraded on the GPU from its seed
# (data.lq_on_device): the loader workers only crop. PyAV from /tmp/site when an earlier call
# installed it (the RealBasicVSR codec pass needs it, and runs on the CPU); without it that
# pass is switched off.
# Settings from the env: FT_MIN (minutes this call), STEPS (the run's length: the cosine
# schedule ends there), BICUBIC_PROB, LR, MAX_SHORT_SIDE (frames' short side cap, 0: native),
# BATCH, ECHO, TAG (run folder name), SKIP (true: the decoder reads full-resolution LQ frames,
# started from the shipped one), RESTART (true: zero the last layer, start as bicubic),
# WORKERS (loader processes), DEST (where results go; default $OUT), STUDENT (the model folder
# whose student makes the latents; default .carry/ft/student), INIT (the decoder to start
# from: a checkpoint, default the student's own), SETS (more settings, key=value,key=value).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$(realpath -m runs/ft)
DATA=$(realpath "${DATA:-.carry/data}")
STUDENT=$(realpath "${STUDENT:-.carry/ft/student}")
mkdir -p "$R"
extra=()
python -c "import av" 2>/dev/null || extra=(--set data.degradation.round1.codec_prob=0 --set data.degradation.round2.codec_prob=0)
IFS=, read -ra sets <<< "${SETS:-}"
for kv in "${sets[@]}"; do extra+=(--set "$kv"); done
SIDE=${MAX_SHORT_SIDE:-0}
RUN=$R/${TAG:-decoder_side$SIDE}
mkdir -p "$RUN"
[ -d "$R/frames_$SIDE" ] || python -m flashvsr.train data cache "$DATA/manifest.jsonl" --root "$DATA" -o "$R/frames_$SIDE" --max-short-side "$SIDE"
start=$(date +%s)
python -m flashvsr.train train tcdecoder configs/small/tcdecoder_finetune.toml --set "data.root=$DATA" \
    --set "data.manifest=$DATA/manifest.jsonl" --set "data.frame_store=$R/frames_$SIDE" --set "data.max_short_side=$SIDE" \
    --set "init=$(realpath "${INIT:-$STUDENT}")" --set "decoder_loss.student=$STUDENT" --set "decoder_loss.restart_output=${RESTART:-false}" \
    --set "model.tc_decoder.lq_skip=${SKIP:-false}" --set "data.workers=${WORKERS:-14}" \
    --set "data.degradation.bicubic_prob=${BICUBIC_PROB:-0.8}" --set data.lq_on_device=true \
    --set "data.batch_size=${BATCH:-8}" --set "run.echo=${ECHO:-2}" \
    --set "optim.lr=${LR:-2e-4}" --set optim.decay=cosine --set "run.steps=${STEPS:-10000}" \
    --set "score.clips=[\"$DATA/validation/basketball_top\", \"$DATA/validation/basketball_bottom\"]" \
    --set "run.out_dir=$RUN" --set "run.max_minutes=${FT_MIN:-8.3}" "${extra[@]}" >> "$RUN.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s; codec pass: ${extra[*]:-on}"
grep -v "^step" "$RUN.log" | tail -n 5
grep "score_gain" "$RUN.log" | tail -n 4
grep "steps_per_s" "$RUN.log" | tail -n 1
DEST=${DEST:-$OUT}
mkdir -p "$DEST"
cp "$RUN/final.pt" "$RUN/best.pt" "$RUN/metrics.jsonl" "$DEST/"
ls -la "$DEST"
