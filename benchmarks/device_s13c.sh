#!/usr/bin/env bash
# Device run (session 13, third): overlap_decode with the engine's own high-priority stream (Upscaler /
# bench run the LR projection and DiT on it); CUDA tests, exactness, the bench pair at both sizes. Carry .whl.
set -u
PART=install bash benchmarks/device_flash4.sh
export PYTHONPATH=$PWD:$PWD/.carry/fa4site:$PWD/.carry/fa4site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
show() { grep -v Warn | grep -A4 "^=="; }
python -m pytest -q -p no:cacheprovider tests/test_engine.py -k overlap 2>&1 | tail -n 3
python benchmarks/option_exact.py overlap_decode --compile 2>&1 | grep -v Warn | tail -n 2 | tee "$OUT/exact.txt"
python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile+overlap_decode compile 2>&1 | show
python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode compile --height 1080 --width 1920 2>&1 | show
