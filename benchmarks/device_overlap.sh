#!/usr/bin/env bash
# Device run (session 12): each call's decoding on a second CUDA stream beside the next call's DiT
# (EngineConfig.overlap_decode, --overlap-decode). Carry .whl (FlashAttention-4, as in device_flash4.sh).
# 1. the bench at 1408×768, 101 frames, --compile, with and without it (VARIANTS);
# 2. the option's frames against the frames without it (bit-identical expected), with --compile;
# 3. the bench at 1920×1080 with and without it (HD=1).
set -u
PART=install bash benchmarks/device_flash4.sh
export PYTHONPATH=$PWD:$PWD/.carry/fa4site:$PWD/.carry/fa4site/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
quiet() { grep -v Warning | tail -n "${1:-60}"; }
python -m pytest -q -p no:cacheprovider tests/test_engine.py -k overlap 2>&1 | quiet 3
python benchmarks/bench_variants.py "$OUT/bench.jsonl" ${VARIANTS:-compile+overlap_decode compile} \
    --frames "${FRAMES:-101}" 2>&1 | quiet
python benchmarks/option_exact.py overlap_decode ${EXACT_FLAGS---compile} 2>&1 | quiet 3 | tee "$OUT/exact.txt"
if [ "${HD:-1}" = 1 ]; then
    python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode compile \
        --height 1080 --width 1920 --frames 101 2>&1 | quiet
fi
