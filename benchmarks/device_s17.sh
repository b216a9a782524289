#!/usr/bin/env bash
# Device runs planned for session 17 (carry .whl; FlashAttention-4 goes to /tmp/fa4site, kept while the machine
# is warm). PART=copies: the KV pool's copies on a side CUDA stream (EngineConfig.kv_copy_stream, built in session
# 16 without device time): the GPU tests of tests/test_attention.py (the side-stream test asserts bit-identical
# frames, so parity is unchanged if it passes), then an A/B in one process at 1080p and at 1408×768, each variant
# twice in alternating order (runs drift by about 1 % within a process). PART=streams: each CUDA stream's kernel
# time at 1080p (profile_streams.py), overlapped as benched and serial. PART=edges: the GPU tests of the compiled
# frame conversions and colour fix, then an A/B of session 16's final settings (eager edges, copies inline)
# against this session's defaults (--compile --overlap-decode: compiled edges, copies aside) at 1080p and
# 1408×768, alternating, then the new defaults' stream profile at 1080p. PART=final: the same A/B after the TC
# decoder's one-frame chunks stopped copying their memory (GPU tests first), then the stream profile. PART=last:
# PART=final's 1080p A/B first, for a short budget. PART=roaming: the GPU tests of tests/test_attention.py (roaming
# KV slots give bit-identical frames), then --compile --overlap-decode with and without roaming_kv_slots.
# PART=next: PART=final's A/B and PART=roaming's in one call (what session 17 left untimed).
set -u
source benchmarks/device_common.sh
PART=${PART:-copies}
fa4_install
base=compile+overlap_decode
old=compile+overlap_decode+eager_edges+kv_copy_stream=false new=compile+overlap_decode
roam=compile+overlap_decode+roaming_kv_slots
if [ "$PART" = copies ]; then
    gpu_tests tests/test_attention.py
    alternate copies $base $base+kv_copy_stream
fi
if [ "$PART" = streams ]; then
    python benchmarks/profile_streams.py --compile --overlap-decode --kv-copy-stream --out "$OUT/streams_1080p_overlap.txt" 2>&1 | grep -v Warn | tail -n 80
    python benchmarks/profile_streams.py --compile --out "$OUT/streams_1080p_serial.txt" 2>&1 | grep -v Warn | tail -n 60
fi
if [ "$PART" = edges ]; then
    gpu_tests tests/test_engine.py tests/test_attention.py
    alternate edges $old $new
    python benchmarks/profile_streams.py --compile --overlap-decode --out "$OUT/streams_1080p_overlap.txt" 2>&1 | grep -v Warn | tail -n 70
fi
if [ "$PART" = final ]; then
    gpu_tests tests/test_engine.py tests/test_attention.py tests/test_models.py
    alternate final $old $new
    python benchmarks/profile_streams.py --compile --overlap-decode --out "$OUT/streams_1080p_overlap.txt" 2>&1 | grep -v Warn | grep -A12 "^span\|^== stream"
fi
if [ "$PART" = last ]; then  # PART=final reordered for a short budget: the 1080p A/B first
    python benchmarks/bench_variants.py "$OUT/final_1080p.jsonl" $old $new $old $new --height 1080 --width 1920 2>&1 | show
    gpu_tests tests/test_engine.py tests/test_models.py
    python benchmarks/bench_variants.py "$OUT/final_768p.jsonl" $new $old 2>&1 | show
fi
if [ "$PART" = roaming ]; then  # roaming KV slots (EngineConfig.roaming_kv_slots): half the KV copies, exact
    gpu_tests tests/test_attention.py
    alternate roaming $base $roam
fi
if [ "$PART" = next ]; then  # everything session 17 left untimed, in one call (~8 min): PART=final + PART=roaming
    gpu_tests tests/test_engine.py tests/test_attention.py tests/test_models.py
    python benchmarks/bench_variants.py "$OUT/next_1080p.jsonl" $old $new $roam $old $new $roam --height 1080 --width 1920 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/next_768p.jsonl" $new $roam $new $roam 2>&1 | show
fi
