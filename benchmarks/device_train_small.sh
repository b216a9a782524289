#!/usr/bin/env bash
# Device run: train the bundled small model (scripts/train_small.sh) on one GPU and bring back
# the model folder (split into parts: the transfer limit is 16 MiB a file) and the logs.
# Carries: .whl (PyAV), .carry/data (scripts/make_data_pack.py ../shared/data .carry/data).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
timeout 545 scripts/train_small.sh .carry/data > "$OUT/train.log" 2>&1
status=$?
echo "training exit $status after $(( $(date +%s) - start )) s"
grep -v "^step" "$OUT/train.log" | tail -n 25
for s in vae stage1 stage2 stage3 tcdecoder; do tail -n 1 "runs/small/$s/metrics.jsonl" 2>/dev/null; done
tar -czf "$OUT/runs.tar.gz" runs/small/scores.jsonl runs/small/manifest.jsonl runs/small/tcdecoder.log \
    runs/small/*/metrics.jsonl runs/small/*/samples 2>/dev/null
if [ -d runs/small/model ]; then
    tar -C runs/small -cf /tmp/model.tar model && split -b 15m /tmp/model.tar "$OUT/model.tar.part-"
fi
ls -la "$OUT"
