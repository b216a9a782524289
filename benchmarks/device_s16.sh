#!/usr/bin/env bash
# Device runs planned for session 16 (session 15 had no device time; see issue 4's notes). FlashAttention-4
# goes to /tmp/fa4site, which stays while the machine is warm even when a later call carries other paths.
# PART=kernels (carry .whl; installs FA4): session 15's Triton kernels (flashvsr/kernels: the block choice's
#   threshold and tables, the decoder's upsampling and output conv): their CUDA tests, each against the ops it
#   replaces (kernel_options.py), the threshold's chunk and warp sweep at 1408×768 and 1080p. PART=ab: the
#   pipeline in one process, with overlap, at 1408×768: as in session 14 (torch_kernels+two_parts; only the LR
#   projection's norms are compiled now), with the
#   kernels, and with the KV pool's single attention call too (the default now).
# PART=parity (carry .carry: a copy of ../shared/fixtures/parity as .carry/parity, right after PART=kernels on the
#   same warm machine): GPU parity against the fixtures with the kernels on (float32 flex; bf16 flash4 with and
#   without --compile), the exactness check for them.
# PART=memory (carry .whl; installs FA4): peak allocated and reserved memory with and without overlap (each
#   variant's models freed first), and FP8 linears' speed, at 1408×768. PART=tight: overlap on an 11 GB budget
#   (the planner's overlap term: tiles chosen, no out-of-memory, speed). PART=hd: PART=memory at 1080p.
# PART=files (carry .carry_av, right after one of the others on the same warm machine): whole file jobs with
#   the faster preset, FA4, 501 frames, per encoder variant.
set -u
source benchmarks/device_common.sh
PART=${PART:-kernels}
case "$PART" in files|parity) ;; *) fa4_install ;; esac
if [ "$PART" = kernels ]; then
    python -m pytest -q tests/test_kernels.py tests/test_attention.py 2>&1 | tail -n 4 | tee "$OUT/pytest_kernels.txt"
    python benchmarks/kernel_options.py --cases decoder lr_windows rope topk --json "$OUT/kernel_options.jsonl" 2>&1 | grep -v -i warn | tail -n 40
    for size in "768 1408" "1152 1920"; do
        set -- $size
        python benchmarks/topk_threshold.py --height "$1" --width "$2" 2>&1 | grep -v -i warn | tee -a "$OUT/topk_threshold.jsonl"
    done
elif [ "$PART" = confirm ]; then  # after dropping the radix select and the narrow conv (no gain measured)
    python -m pytest -q tests/test_kernels.py tests/test_attention.py -W ignore 2>&1 | grep -E "^E  |passed|failed" | head -n 30
    python benchmarks/bench_variants.py "$OUT/confirm_1080p.jsonl" compile+overlap_decode \
        compile+overlap_decode+decoder_frame_chunk=2 --height 1080 --width 1920 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/confirm_768p.jsonl" compile+overlap_decode 2>&1 | show
elif [ "$PART" = rope ]; then  # the query/key norm + rotation kernel per rows per program, at both sizes' token counts
    for size in "768 1408" "1152 1920"; do
        set -- $size
        python benchmarks/kernel_options.py --cases rope --height "$1" --width "$2" --json "$OUT/rope_$1.jsonl" 2>&1 \
            | grep -v -i warn | tail -n 8
    done
elif [ "$PART" = bench ]; then  # the product path at both sizes, three timed passes each
    python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode --height 1080 --width 1920 \
        --repeats 3 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/bench_768p.jsonl" compile+overlap_decode --repeats 3 2>&1 | show
elif [ "$PART" = cudnn ]; then  # cuDNN's own timing of conv algorithms (decoder, LR projection) against its heuristics
    python benchmarks/bench_variants.py "$OUT/cudnn_1080p.jsonl" compile+overlap_decode compile+overlap_decode+cudnn_benchmark \
        --height 1080 --width 1920 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/cudnn_768p.jsonl" compile+overlap_decode compile+overlap_decode+cudnn_benchmark \
        2>&1 | show
elif [ "$PART" = ab ]; then
    python benchmarks/bench_variants.py "$OUT/kernels.jsonl" compile+overlap_decode+torch_kernels+two_parts \
        compile+overlap_decode+two_parts compile+overlap_decode 2>&1 | show
elif [ "$PART" = parity ]; then
    python benchmarks/gpu_parity.py .carry/parity --out "$OUT/gpu_parity.json" \
        --also bfloat16/flash4 bfloat16/flash4+compile 2>&1 | grep -v Warning | tail -n 20
elif [ "$PART" = memory ]; then
    python benchmarks/bench_variants.py "$OUT/memory.jsonl" compile compile+overlap_decode \
        compile+overlap_decode+linears=fp8 2>&1 | show
elif [ "$PART" = tight ]; then
    python benchmarks/bench_variants.py "$OUT/memory_tight.jsonl" compile+memory_limit_gb=11 \
        compile+overlap_decode+memory_limit_gb=11 2>&1 | show
elif [ "$PART" = hd ]; then
    python benchmarks/bench_variants.py "$OUT/memory_1080p.jsonl" compile+overlap_decode+torch_kernels+two_parts \
        compile+overlap_decode compile+overlap_decode+linears=fp8 --height 1080 --width 1920 2>&1 | show
else
    [ -d /tmp/avsite/av ] || pip install -q --no-deps --no-index --target /tmp/avsite .carry_av/*.whl 2>&1 | grep -v "root' user" | tail -n 2
    export PYTHONPATH=/tmp/avsite:$PYTHONPATH
    python benchmarks/file_job_waits.py default reserve_core no_encoder --compile --overlap-decode --frames 501 2>&1 \
        | grep -v -i warn | tail -n 8 | tee "$OUT/file_job_waits.txt"
fi
