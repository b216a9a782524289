#!/usr/bin/env bash
# Device run: large outputs under a 24 GB budget (`--memory-limit 24`, planned and enforced by
# the allocator, as on a 24 GB card), tiling chosen by the memory planner; one process per
# size (FlexAttention keeps compiled kernels per shape). Writes $OUT/tiles_<w>x<h>.json.
set -u
[ -d /tmp/site/av ] || pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl  # the CLI needs PyAV
export PYTHONPATH=/tmp/site:$PWD
export PYTHONUNBUFFERED=1
LIMIT=${LIMIT:-24}
run() {  # width height frames
    echo "== $1×$2, $3 frames, --memory-limit $LIMIT"
    python -m flashvsr bench --width "$1" --height "$2" --frames "$3" --warmup 1 --repeats 1 \
        --memory-limit "$LIMIT" --json "$OUT/tiles_$1x$2.json" 2>&1 | grep -v Warning | tail -n 6
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run 1408 768 41
run 1920 1080 41
run 2560 1440 25
run 3840 2160 25
echo "== 1408×768 with --memory-limit 4 (session 6: a clear refusal; session 7: runs, weights streamed, 5 tiles)"
python -m flashvsr bench --frames 9 --warmup 0 --repeats 1 --memory-limit 4 2>&1 | tail -n 3
