#!/usr/bin/env bash
# Device run (session 13, fourth): overlap (with its priority stream) and a decoder chunk of 2 frames. Carry .whl.
set -u
PART=install bash benchmarks/device_flash4.sh
export PYTHONPATH=$PWD:$PWD/.carry/fa4site:$PWD/.carry/fa4site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
show() { grep -v Warn | grep -A4 "^=="; }
python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile+overlap_decode+decoder_frame_chunk=2 compile+overlap_decode \
    compile+overlap_decode+decoder_frame_chunk=2 2>&1 | show
