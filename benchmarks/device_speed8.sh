#!/usr/bin/env bash
# Device run (session 8): speed options. PART=a: each option's frames against those without it
# (EXACT options), then the bench (VARIANTS, FRAMES, HEIGHT, WIDTH). PART=b: FlexAttention kernel
# options on the steady-state LCSA shapes (FLEX_ARGS). PART=c: GPU parity against the fixtures (carry a
# copy of ../shared/fixtures/parity as .carry/parity), then the bench (VARIANTS) and BIG variants at 1080p.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
quiet() { grep -v Warning | tail -n "${1:-14}"; }
if [ "${PART:-a}" = a ]; then
    for option in ${EXACT:-decoder_channels_last}; do
        python benchmarks/option_exact.py "$option" 2>&1 | quiet 2 | tee -a "$OUT/exact.txt"
    done
    for v in ${VARIANTS:-base decoder_channels_last=false compile}; do
        python benchmarks/bench_variants.py "$OUT/bench.jsonl" "$v" --frames "${FRAMES:-101}" \
            --height "${HEIGHT:-768}" --width "${WIDTH:-1408}" 2>&1 | quiet 6
    done
elif [ "${PART}" = c ]; then
    python benchmarks/gpu_parity.py .carry/parity --out "$OUT/gpu_parity.json" 2>&1 | grep -v Warning | tail -n 12
    for v in ${VARIANTS:-base compile}; do
        python benchmarks/bench_variants.py "$OUT/bench.jsonl" "$v" --frames "${FRAMES:-101}" 2>&1 | quiet 6
    done
    for v in ${BIG:-compile}; do
        python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" "$v" --frames "${FRAMES:-101}" \
            --height 1080 --width 1920 2>&1 | quiet 6
    done
else
    python benchmarks/flex_options.py ${FLEX_ARGS:---autotune} 2>&1 | grep -v Warning | tail -n 14 | tee "$OUT/flex_options.txt"
fi
