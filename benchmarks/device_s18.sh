#!/usr/bin/env bash
# Device runs planned for session 18 (carry .whl; FlashAttention-4 goes to /tmp/fa4site, kept while the machine
# is warm). PART=held: the GPU tests of the engine, attention and models (failures with their tracebacks), then
# --compile --overlap-decode with fixed and roaming KV slots, alternating, at 1080p and 1408×768, after each
# layer's attention started waiting for the side stream's earlier copies (session 17's hold-until-wait held a
# call's first layers' keys and values to its end: 25.6 GB allocated at 1080p against 18.0). PART=roamed: the
# same after --overlap-decode started roaming by default (fixed = roaming_kv_slots=false), then GPU parity
# against the fixtures with --compile (needs .carry/parity from an earlier call, or skips). PART=cli (carry
# .carry_av; FlashAttention-4 from an earlier part on this warm machine): the figures from the CLI itself.
# PART=h200 (carry .whl): --compile --overlap-decode at 1408×768 and 1080p, and --compile on a 9.5 GB budget.
set -u
source benchmarks/device_common.sh
PART=${PART:-held}
case "$PART" in parity|cli) ;; *) fa4_install ;; esac
new=compile+overlap_decode roam=compile+overlap_decode+roaming_kv_slots fixed=compile+overlap_decode+roaming_kv_slots=false
if [ "$PART" = held ]; then
    gpu_tests tests/test_engine.py tests/test_attention.py tests/test_models.py
    alternate held $new $roam
fi
if [ "$PART" = roamed ]; then
    gpu_tests tests/test_engine.py tests/test_attention.py tests/test_models.py
    alternate roamed $fixed $new
    [ -d .carry/parity ] && python benchmarks/gpu_parity.py .carry/parity --out "$OUT/gpu_parity.json" \
        --also bfloat16/flash4 bfloat16/flash4+compile bfloat16/flash4+compile+overlap_decode 2>&1 | grep -v Warn | tail -n 24
fi
if [ "$PART" = parity ]; then  # carry .carry; FlashAttention-4 installed by an earlier part on this warm machine
    python benchmarks/gpu_parity.py .carry/parity --out "$OUT/gpu_parity.json" \
        --also bfloat16/flash4 bfloat16/flash4+compile bfloat16/flash4+compile+overlap_decode 2>&1 | grep -v Warn | tail -n 24
fi
if [ "$PART" = cli ]; then
    [ -d /tmp/avsite/av ] || pip install -q --no-deps --no-index --target /tmp/avsite .carry_av/*.whl 2>&1 | tail -n 2
    export PYTHONPATH=$PYTHONPATH:/tmp/avsite
    for args in "--compile --overlap-decode" "--compile --overlap-decode --height 1080 --width 1920" \
        "--compile --memory-limit 9.5"; do
        echo "== flashvsr bench $args"
        python -m flashvsr bench $args 2>&1 | grep -v Warn | tail -n 7 | tee -a "$OUT/cli.txt"
    done
fi
if [ "$PART" = h200 ]; then
    python benchmarks/bench_variants.py "$OUT/h200_768p.jsonl" compile+overlap_decode compile+memory_limit_gb=9.5 2>&1 | show
    python benchmarks/bench_variants.py "$OUT/h200_1080p.jsonl" compile+overlap_decode --height 1080 --width 1920 2>&1 | show
fi
