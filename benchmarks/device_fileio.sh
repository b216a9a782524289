#!/usr/bin/env bash
# Device run: whole file jobs (flashvsr bench --file-io: an H.264 input with audio decoded, upscaled and
# encoded as `flashvsr upscale` does) against frames in memory, with and without overlap_decode.
# Carry .carry_av (the PyAV wheel; the device has none). FlexAttention (FA4's wheels do not fit beside it).
set -u
[ -d /tmp/avsite/av ] || pip install -q --no-deps --no-index --target /tmp/avsite .carry_av/*.whl 2>&1 | tail -n 2
export PYTHONPATH=/tmp/avsite:$PWD PYTHONUNBUFFERED=1
show() { grep -v Warn | grep -A4 "^=="; }
python benchmarks/file_job_parts.py 2>&1 | tail -n 4 | tee "$OUT/file_job_parts.txt"  # decode and encode alone, no model
python benchmarks/bench_variants.py "$OUT/fileio.jsonl" compile+overlap_decode+file_io compile+file_io \
    compile+overlap_decode compile ${EXTRA:-} 2>&1 | show
