#!/usr/bin/env bash
# Device run: fine-tune the small model's residual TC decoder on its student's latents
# (configs/small/tcdecoder_finetune.toml). Carries .carry/data (training clips) and .carry/ft
# (the model's DiT, LR projection and decoder, and the curated manifest). No PyAV here: frames
# decode through OpenCV, and the codec degradation is off for this run.
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
MINUTES=${1:-7.5}
R=$PWD/runs/small
mkdir -p "$R"
python -m flashvsr.train data cache .carry/ft/manifest.jsonl --root .carry/data -o "$R/frames" --max-short-side 384
timeout 540 python -m flashvsr.train train tcdecoder configs/small/tcdecoder_finetune.toml \
    --set "data.root=$PWD/.carry/data" --set "data.manifest=$PWD/.carry/ft/manifest.jsonl" \
    --set "data.frame_store=$R/frames" --set "init=$PWD/.carry/ft/student" \
    --set "decoder_loss.student=$PWD/.carry/ft/student" --set "run.max_minutes=$MINUTES" \
    --set data.degradation.round1.codec_prob=0 --set data.degradation.round2.codec_prob=0 ${EXTRA_SET:-} \
    > "$OUT/finetune.log" 2>&1
echo "exit $?"
grep -v "^step" "$OUT/finetune.log" | tail -n 8
grep "^step" "$OUT/finetune.log" | awk 'NR % 20 == 1' | tail -n 12
cp "$R/tcdecoder_finetune/final.pt" "$OUT/decoder_final.pt" 2>/dev/null
tar -czf "$OUT/finetune_run.tar.gz" -C "$R" tcdecoder_finetune/metrics.jsonl tcdecoder_finetune/samples 2>/dev/null
ls -la "$OUT"
