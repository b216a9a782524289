#!/usr/bin/env bash
# Device run (session 10): FlashAttention-4 as the LCSA kernel. The device cannot download, so the
# wheels travel as carry under .whl/ (flash-attn-4 and its pure-Python deps as wheels; the 92 MB
# nvidia-cutlass-dsl-libs-cu13 wheel unpacked and re-packed as .whl/*.tar.xz to fit the carry limit).
# They are installed into .carry/fa4site (ignored and never carried, so it stays while the machine is
# warm and later calls need not carry .whl/ again).
# PART=a: install, the one-layer kernel comparison, then the bench (VARIANTS). PART=c: GPU parity with
# the flash4 backend (carry .carry/parity). Any other PART: install only.
set -u
SITE=${FA4_SITE:-$PWD/.carry/fa4site}  # FA4_SITE=/tmp/fa4site survives calls that carry other paths
if [ ! -f "$SITE/.installed" ]; then
    # one pip call for all wheels (several share the nvidia_cutlass_dsl/ folder), then the unpacked
    # CUDA 13 libraries over them (their generated dialect files must win over the base wheel's)
    rm -rf "$SITE" && mkdir -p "$SITE"
    pip install -q --no-deps --no-index --target "$SITE" .whl/*.whl 2>&1 | grep -v "root' user" | tail -n 3
    for archive in .whl/*.tar.xz; do tar xJf "$archive" -C "$SITE"; done
    touch "$SITE/.installed"
fi
export PYTHONPATH=$PWD:$SITE:$SITE/nvidia_cutlass_dsl/dsl_packages PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python -c "import flash_attn.cute, cutlass; print('flash_attn.cute imports')" 2>&1 | tail -n 4
quiet() { grep -v Warning | tail -n "${1:-14}"; }
if [ "${PART:-a}" = a ]; then
    python benchmarks/flash4_attention.py 2>&1 | quiet 8 | tee "$OUT/flash4_attention.txt"
    for v in ${VARIANTS:-compile compile+attention_backend=flash4}; do
        python benchmarks/bench_variants.py "$OUT/bench.jsonl" "$v" --frames "${FRAMES:-101}" \
            --height "${HEIGHT:-768}" --width "${WIDTH:-1408}" 2>&1 | quiet 6
    done
elif [ "${PART}" = c ]; then
    python benchmarks/gpu_parity.py .carry/parity --out "$OUT/gpu_parity.json" \
        --also bfloat16/flash4 bfloat16/flash4+compile 2>&1 | grep -v Warning | tail -n 16
fi
