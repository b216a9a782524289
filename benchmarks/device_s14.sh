#!/usr/bin/env bash
# Device runs (session 14).
# PART=idle (carry .whl): installs FlashAttention-4 into .carry/fa4site (kept while the machine is warm),
#   then how idle the GPU is in steady calls (benchmarks/gpu_idle.py).
# PART=sync (carry .whl): the CUDA tests of host syncs, where the product path still syncs, then the bench.
# PART=fileio (carry .carry_av; FA4 from an earlier PART on this machine, else flex): whole file jobs.
set -u
export PYTHONUNBUFFERED=1
PART=${PART:-idle}
[ "$PART" = fileio ] || [ "$PART" = waits ] || PART=install bash benchmarks/device_flash4.sh
SITE=$PWD/.carry/fa4site
export PYTHONPATH=$PWD:$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages
quiet() { grep -v -i warn | tail -n "${1:-14}"; }
show() { grep -v Warn | grep -A5 "^=="; }
if [ "$PART" = idle ]; then
    for args in "--compile --overlap-decode" "--compile" "--compile --overlap-decode --height 1080 --width 1920"; do
        name=$(echo "$args" | tr -d ' -')
        timeout 200 python benchmarks/gpu_idle.py $args --out "$OUT/idle_$name.txt" 2>&1 | quiet 22
    done
elif [ "$PART" = waits ]; then  # carry .carry_av: a file job's feeding thread, per encoder variant
    [ -d /tmp/avsite/av ] || pip install -q --no-deps --no-index --target /tmp/avsite .carry_av/*.whl 2>&1 | grep -v "root' user" | tail -n 2
    export PYTHONPATH=/tmp/avsite:$PYTHONPATH
    python -m pytest -q -p no:cacheprovider tests/test_io_background.py 2>&1 | tail -n 1
    python benchmarks/file_job_waits.py ${WAITS:-default niceness=0 threads=4 no_encoder} --compile --overlap-decode \
        --frames "${FRAMES:-301}" 2>&1 | grep -v -i warn | tail -n 12 | tee "$OUT/file_job_waits.txt"
elif [ "$PART" = graphs ]; then
    python benchmarks/option_exact.py cuda_graphs --compile 2>&1 | grep -v -i warn | tail -n 4 | tee "$OUT/graphs_exact.txt"
    python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile+overlap_decode compile+overlap_decode+cuda_graphs 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode+cuda_graphs --height 1080 --width 1920 2>&1 | show
elif [ "$PART" = sync ]; then
    python -m pytest -q -p no:cacheprovider tests/test_transfer.py tests/test_engine.py -k "transfer or host or overlap" \
        2>&1 | tail -n 6 | tee "$OUT/pytest_sync.txt"
    timeout 200 python benchmarks/gpu_idle.py --compile --overlap-decode --find-syncs --out "$OUT/syncs.txt" 2>&1 | quiet 28
    python benchmarks/bench_variants.py "$OUT/bench.jsonl" compile compile+overlap_decode 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/bench_1080p.jsonl" compile+overlap_decode --height 1080 --width 1920 2>&1 | show
else
    [ -n "${TESTS:-1}" ] && python -m pytest -q -p no:cacheprovider tests/test_engine.py -k "host or overlap or handed or graph" 2>&1 | grep -E "^E |passed|failed" | head -n 30
    [ -d /tmp/avsite/av ] || pip install -q --no-deps --no-index --target /tmp/avsite .carry_av/*.whl 2>&1 | grep -v "root' user" | tail -n 2
    export PYTHONPATH=/tmp/avsite:$PYTHONPATH
    python benchmarks/file_job_waits.py --compile --overlap-decode --frames "${FRAMES:-101}" 2>&1 | grep -v -i warn | tail -n 8 \
        | tee "$OUT/file_job_waits.txt"
    python benchmarks/bench_variants.py "$OUT/fileio.jsonl" ${VARIANTS:-compile+overlap_decode compile+overlap_decode+cuda_graphs \
        compile+overlap_decode+cuda_graphs+file_io} --frames "${FRAMES:-101}" 2>&1 | show
fi
