#!/usr/bin/env bash
# Device run: the low-memory modes at 1408×768 (41 frames) under a hard allocator cap
# (`memory_limit_gb`, planned and enforced as on a card of that size), one process per variant
# (the cap and FlexAttention's compiled shapes are per process). Lines in $OUT/lowmem6.jsonl.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for v in ${VARIANTS:-memory_limit_gb=6 memory_limit_gb=6+kv_cache=fp8+decoder_frame_chunk=1 memory_limit_gb=9.5}; do
    python benchmarks/bench_variants.py "$OUT/lowmem6.jsonl" "$v" --frames "${FRAMES:-41}" 2>&1 | grep -v Warning | tail -n 12
done
