#!/usr/bin/env bash
# Device run: train the bundled small model (scripts/train_small.sh) on one GPU, in three commands
# (the device limits one command to 10 minutes; runs/ stays on the machine in between):
#   bash benchmarks/device_train_small.sh 1   curation, VAE, Stage 1 ∥ TC decoder
#   bash benchmarks/device_train_small.sh 2   Stages 2 and 3, export (runs/small/model_base)
#   bash benchmarks/device_train_small.sh 3   residual TC decoder fine-tune (runs/small/model)
# Phases 2 and 3 bring their model folder back split into parts (16 MiB per file transfer limit).
# Carries: .whl (PyAV), .carry/data (scripts/make_data_pack.py ../shared/data .carry/data).
set -u
PHASE=${1:-all}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
timeout 555 scripts/train_small.sh .carry/data "$PHASE" > "$OUT/train_phase$PHASE.log" 2>&1
echo "phase $PHASE exit $? after $(( $(date +%s) - start )) s"
grep -v "^step" "$OUT/train_phase$PHASE.log" | tail -n 20
for s in vae stage1 stage2 stage3 tcdecoder tcdecoder_finetune; do tail -n 1 "runs/small/$s/metrics.jsonl" 2>/dev/null; done
tar -czf "$OUT/runs_phase$PHASE.tar.gz" runs/small/scores.jsonl runs/small/manifest.jsonl runs/small/tcdecoder.log \
    runs/small/*/metrics.jsonl runs/small/*/samples 2>/dev/null
model=model_base
[ "$PHASE" = 3 ] || [ "$PHASE" = all ] && model=model
if [ "$PHASE" != 1 ] && [ -d "runs/small/$model" ]; then
    tar -C runs/small -cf /tmp/model.tar "$model" && split -b 15m /tmp/model.tar "$OUT/$model.tar.part-"
fi
ls -la "$OUT"
