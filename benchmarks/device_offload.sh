#!/usr/bin/env bash
# Device run (session 7): DiT weights streamed from host memory, and the TC decoder growing frames
# before upsampling. PART=a: exactness on the GPU + where the memory goes (BREAKDOWNS=HxWxCHUNKxOFFLOAD …);
# PART=b: speed and peaks (VARIANTS, FRAMES, HEIGHT, WIDTH).
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
quiet() { grep -v Warning | tail -n "${1:-14}"; }
if [ "${PART:-a}" = a ]; then
    python benchmarks/offload_exact.py 2>&1 | quiet 3 | tee "$OUT/exact.txt"
    python benchmarks/offload_exact.py --compile 2>&1 | quiet 3 | tee -a "$OUT/exact.txt"
    for args in ${BREAKDOWNS:-"768x1408x2xoff" "768x1408x1xoff" "768x1408x2xon" "768x1408x1xon"}; do
        IFS=x read -r h w chunk offload <<< "$args"
        python benchmarks/memory_breakdown.py --height "$h" --width "$w" --decoder-chunk "$chunk" --offload-weights "$offload" \
            2>&1 | quiet 12 | tee -a "$OUT/memory_breakdown.txt"
    done
else
    for v in ${VARIANTS:-base offload_weights=on decoder_frame_chunk=1+offload_weights=on memory_limit_gb=9.5}; do
        python benchmarks/bench_variants.py "$OUT/offload.jsonl" "$v" --frames "${FRAMES:-41}" \
            --height "${HEIGHT:-768}" --width "${WIDTH:-1408}" 2>&1 | quiet 6
    done
fi
