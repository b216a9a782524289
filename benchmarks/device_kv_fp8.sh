#!/usr/bin/env bash
# Device run: the fp8 KV cache (opt-in, lossy) against the exact cache, same bench, same
# process settings; one process per case. Writes $OUT/kv_<format>_<w>x<h>.json.
set -u
[ -d /tmp/site/av ] || pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl  # the CLI needs PyAV
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
for size in "1408 768" "1920 1080"; do
    set -- $size
    for fmt in model fp8; do
        echo "== $1×$2, --kv-cache $fmt"
        python -m flashvsr bench --width "$1" --height "$2" --frames 41 --warmup 1 --repeats 2 --tile off \
            --kv-cache "$fmt" --json "$OUT/kv_${fmt}_$1x$2.json" 2>&1 | grep -v Warning | tail -n 4
    done
done
