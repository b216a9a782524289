#!/usr/bin/env bash
# Device run (one GPU): the speed options of the engine against the plain engine with
# `flashvsr bench`'s runner (benchmarks/bench_variants.py), then their exactness against the
# parity fixtures (benchmarks/gpu_parity.py --speed). Installs PyAV into /tmp/site for later
# calls on the same machine. Carries .whl and .carry/fixtures (the parity fixture folders).
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 330 python benchmarks/bench_variants.py "$OUT/speed.jsonl" base compile
timeout 90 python benchmarks/bench_variants.py "$OUT/speed.jsonl" compile --height 1080 --width 1920
timeout 100 python benchmarks/gpu_parity.py .carry/fixtures/parity --speed --out "$OUT/gpu_parity_speed.json" 2>&1 | grep -v Warn
ls -la "$OUT"
