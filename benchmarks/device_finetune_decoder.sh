#!/usr/bin/env bash
# Device run (one GPU): fine-tune the bundled model's residual TC decoder on its own student's
# latents (phase 3 of scripts/train_small.sh, continued from the shipped decoder), and bring
# back the EMA decoder (final.pt) and its loss curve. Carries .carry/data (data pack with
# manifest.jsonl) and .carry/ft/student (the bundled model folder without its VAE).
# PyAV from /tmp/site when an earlier call on this machine installed it (the RealBasicVSR
# codec pass needs it); without it that pass is switched off. FT_MIN, BICUBIC_PROB, LR,
# MAX_SHORT_SIDE (frames' short side cap, 0: native; default 384 as in the recipe) from the env.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
R=$(realpath -m runs/ft)
DATA=$(realpath .carry/data)
STUDENT=$(realpath .carry/ft/student)
mkdir -p "$R"
extra=()
python -c "import av" 2>/dev/null || extra=(--set data.degradation.round1.codec_prob=0 --set data.degradation.round2.codec_prob=0)
SIDE=${MAX_SHORT_SIDE:-384}
RUN=$R/decoder_side$SIDE
[ -d "$R/frames_$SIDE" ] || python -m flashvsr.train data cache "$DATA/manifest.jsonl" --root "$DATA" -o "$R/frames_$SIDE" --max-short-side "$SIDE"
start=$(date +%s)
python -m flashvsr.train train tcdecoder configs/small/tcdecoder_finetune.toml --set "data.root=$DATA" \
    --set "data.manifest=$DATA/manifest.jsonl" --set "data.frame_store=$R/frames_$SIDE" --set "data.max_short_side=$SIDE" --set "init=$STUDENT" \
    --set "decoder_loss.student=$STUDENT" --set decoder_loss.restart_output=false \
    --set "data.degradation.bicubic_prob=${BICUBIC_PROB:-0.5}" --set "optim.lr=${LR:-2e-4}" \
    --set "run.out_dir=$RUN" --set "run.max_minutes=${FT_MIN:-8.3}" "${extra[@]}" > "$RUN.log" 2>&1
echo "exit $? after $(( $(date +%s) - start )) s; codec pass: ${extra[*]:-on}"
grep -v "^step" "$RUN.log" | tail -n 5
cp "$RUN/final.pt" "$RUN/metrics.jsonl" "$OUT/"
ls -la "$OUT"
