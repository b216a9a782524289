#!/usr/bin/env python3
"""FlexAttention kernel options on the DiT's steady-state LCSA shapes (one layer, two parts).

    python benchmarks/flex_options.py [--height 768 --width 1408] [--autotune]

Builds one call's queries, the KV ring and the current windows at the given output size,
random block masks at the top-k density (half of the allowed windows), then times the flex
backend's two kernel calls for each candidate ``kernel_options`` (CUDA events, median of
20), and reports each option's largest difference from the default kernel.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn.attention.flex_attention import flex_attention

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.attention.backends import block_mask_from_windows  # noqa: E402
from flashvsr.config import TOKEN_PIXELS, WINDOW, WINDOW_TOKENS  # noqa: E402

HEADS, HEAD_DIM, RING_SLICES, CALL_SLICES, DENSITY = 12, 128, 3, 1, 0.5
CANDIDATES = {
    "default": {},
    "m128_n128_s2_w8": {"BLOCK_M": 128, "BLOCK_N": 128, "num_stages": 2, "num_warps": 8},
    "m128_n128_s3_w8": {"BLOCK_M": 128, "BLOCK_N": 128, "num_stages": 3, "num_warps": 8},
    "m128_n64_s4_w8": {"BLOCK_M": 128, "BLOCK_N": 64, "num_stages": 4, "num_warps": 8},
    "m128_n64_s3_w4": {"BLOCK_M": 128, "BLOCK_N": 64, "num_stages": 3, "num_warps": 4},
    "m64_n128_s3_w4": {"BLOCK_M": 64, "BLOCK_N": 128, "num_stages": 3, "num_warps": 4},
    "tma": {"USE_TMA": True},
    "tma_m128_n128_s2_w8": {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 128, "num_stages": 2, "num_warps": 8},
    "tma_m128_n64_s4_w8": {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 64, "num_stages": 4, "num_warps": 8},
}


def time_ms(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e))
    return sorted(times)[len(times) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--autotune", action="store_true", help="also time torch.compile's max-autotune choice")
    ap.add_argument("--only", nargs="*", help="candidate names to run")
    args = ap.parse_args()
    torch._dynamo.config.recompile_limit = 256
    windows = (args.height // TOKEN_PIXELS // WINDOW[1]) * (args.width // TOKEN_PIXELS // WINDOW[2])
    q_len = CALL_SLICES * windows * WINDOW_TOKENS
    ring_len = RING_SLICES * windows * WINDOW_TOKENS
    gen = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda n: torch.randn(1, HEADS, n, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)  # noqa: E731
    q, kr, vr, kc, vc = rand(q_len), rand(ring_len), rand(ring_len), rand(q_len), rand(q_len)
    mask = lambda kw: torch.rand(1, HEADS, windows * CALL_SLICES, kw, device="cuda", generator=gen) < DENSITY  # noqa: E731
    ring_mask = block_mask_from_windows(mask(windows * RING_SLICES), q_len, ring_len)
    call_mask = block_mask_from_windows(mask(windows * CALL_SLICES), q_len, q_len)
    flops = 4 * HEAD_DIM * HEADS * WINDOW_TOKENS * WINDOW_TOKENS * DENSITY * windows * CALL_SLICES * windows * (RING_SLICES + CALL_SLICES)
    results, reference = {}, None
    candidates = {k: v for k, v in CANDIDATES.items() if not args.only or k in args.only}
    runs = [(name, torch.compile(flex_attention, dynamic=False), opts) for name, opts in candidates.items()]
    if args.autotune:
        runs.append(("max_autotune", torch.compile(flex_attention, dynamic=False, mode="max-autotune-no-cudagraphs"), {}))
    for name, kernel, opts in runs:
        def both():
            a = kernel(q, kr, vr, block_mask=ring_mask, return_lse=True, kernel_options=opts or None)
            b = kernel(q, kc, vc, block_mask=call_mask, return_lse=True, kernel_options=opts or None)
            return a, b
        try:
            out = both()
            torch.cuda.synchronize()
        except Exception as error:  # a candidate the template rejects: report it, go on
            results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
            print(name, results[name]["error"])
            continue
        ms = time_ms(both)
        if reference is None:
            reference = out
        diff = max((o[0].float() - r[0].float()).abs().max().item() for o, r in zip(out, reference))
        results[name] = {"ms": ms, "tflops": flops / ms / 1e9, "max_abs_diff_vs_default": diff, "options": opts}
        print(f"{name:24s} {ms:7.3f} ms  {flops / ms / 1e9:6.0f} TFLOP/s  max|Δ| {diff:.2e}")
    print(json.dumps({"size": [args.width, args.height], "q_len": q_len, "ring_len": ring_len, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
