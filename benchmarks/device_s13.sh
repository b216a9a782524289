#!/usr/bin/env bash
# Device run (session 13): overlap_decode with FlashAttention-4 at both sizes, the decoder chunk
# under overlap, and the stabilizer's cost. Carry .whl (as device_flash4.sh).
set -u
PART=install bash benchmarks/device_flash4.sh
export PYTHONPATH=$PWD:$PWD/.carry/fa4site:$PWD/.carry/fa4site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
show() { grep -v Warn | grep -A4 "^=="; }
python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile+overlap_decode compile+overlap_decode+decoder_frame_chunk=2 \
    compile+overlap_decode+stabilize compile 2>&1 | show
python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode compile \
    --height 1080 --width 1920 2>&1 | show
