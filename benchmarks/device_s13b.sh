#!/usr/bin/env bash
# Device run (session 13, second): with overlap_decode, the caller's stream (LR projection, DiT) at the
# highest CUDA priority (bench's high_priority), and CUDA graphs; at 1408×768 and 1080p. Carry .whl.
set -u
PART=install bash benchmarks/device_flash4.sh
export PYTHONPATH=$PWD:$PWD/.carry/fa4site:$PWD/.carry/fa4site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
show() { grep -v Warn | grep -A4 "^=="; }
python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile+overlap_decode+high_priority compile+overlap_decode \
    compile+overlap_decode+high_priority+cuda_graphs compile+overlap_decode+cuda_graphs compile 2>&1 | show
python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode+high_priority compile+overlap_decode \
    --height 1080 --width 1920 2>&1 | show
