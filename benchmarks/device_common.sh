# Sourced by the session device scripts (device_s16.sh …): FlashAttention-4 from /tmp/fa4site (kept while the
# machine is warm; installed from a carried .whl by fa4_install), and the helpers their parts share.
export PYTHONUNBUFFERED=1 FA4_SITE=/tmp/fa4site
export PYTHONPATH=$PWD:$FA4_SITE:$FA4_SITE/nvidia_cutlass_dsl/dsl_packages
fa4_install() { PART=install bash benchmarks/device_flash4.sh; }  # installs once per machine
show() { grep -v Warn | grep -A6 "^=="; }  # a bench_variants.py report, without the warnings
# gpu_tests FILE…: the tests named for the GPU in those files, with the failures' tracebacks
gpu_tests() {
    python -m pytest -q "$@" -W ignore -k "gpu" --tb=short -rf 2>&1 \
        | grep -E "^E  |^tests/|passed|failed|^FAILED|line [0-9]+, in|\.py:[0-9]+: in" | head -n 60
}
# alternate NAME A B: variants A, B, A, B in one process at 1080p, then at 1408×768 (runs drift ~1 % in a process)
alternate() {
    python benchmarks/bench_variants.py "$OUT/$1_1080p.jsonl" "$2" "$3" "$2" "$3" --height 1080 --width 1920 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/$1_768p.jsonl" "$2" "$3" "$2" "$3" 2>&1 | show
}
