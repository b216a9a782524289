#!/usr/bin/env bash
# Device run: peak memory at 1408×768 with the TC decoder one frame at a time (exact) and with
# the fp8 KV cache on top (lossy), against the defaults; one process per case.
set -u
[ -d /tmp/site/av ] || pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl  # the CLI needs PyAV
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
case_() {  # name, extra bench flags
    name=$1; shift
    echo "== $name: $*"
    python -m flashvsr bench --frames 41 --warmup 1 --repeats 2 --tile off "$@" --json "$OUT/lowmem_$name.json" 2>&1 \
        | grep -v Warning | tail -n 3
}
case_ default
case_ chunk1 --decoder-chunk 1
case_ chunk1_fp8 --decoder-chunk 1 --kv-cache fp8
