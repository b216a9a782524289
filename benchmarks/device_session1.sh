#!/usr/bin/env bash
# Device session 1 (issue 2 GPU parity + first timings). Fixtures travel in .carry/ (ignored).
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
python -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
python benchmarks/gpu_parity.py .carry/fixtures/parity --out "$OUT/gpu_parity.json" 2>&1 | tee "$OUT/gpu_parity.log" | grep -v Warning
python -m flashvsr.cli bench --json "$OUT/bench_tiny_768x1408.json" 2>&1 | tee "$OUT/bench.log"
python benchmarks/profile_call.py --out "$OUT/profile_768x1408.txt" > /dev/null 2>&1; head -60 "$OUT/profile_768x1408.txt"
