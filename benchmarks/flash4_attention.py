#!/usr/bin/env python3
"""FlashAttention-4 against FlexAttention on the DiT's steady-state LCSA shapes (one layer, two parts).

    python benchmarks/flash4_attention.py [--height 768 --width 1408] [--density 0.5]

The same inputs as ``flex_options.py`` (one call's queries, a three-slice KV ring and the
current windows, random 128×128 block masks at the top-k density), run through the ``flex``
and ``flash4`` backends (both parts and the log-sum-exp merge), timed with CUDA events
(median of 20), each compared with the float32 ``dense`` oracle. A second case gives some
query windows no selected block in either part (they must come out as zeros).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flex_options import HEADS, HEAD_DIM, RING_SLICES, CALL_SLICES, time_ms  # noqa: E402

from flashvsr.attention.backends import (  # noqa: E402
    dense_block_sparse, flash4_block_sparse, flex_block_sparse, join_parts,
)  # fmt: skip
from flashvsr.config import TOKEN_PIXELS, WINDOW, WINDOW_TOKENS  # noqa: E402


def inputs(windows: int, density: float, empty_rows: bool):
    q_len, ring_len = CALL_SLICES * windows * WINDOW_TOKENS, RING_SLICES * windows * WINDOW_TOKENS
    gen = torch.Generator(device="cuda").manual_seed(0)
    rand = lambda n: torch.randn(1, n, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)  # noqa: E731
    mask = lambda kw: torch.rand(1, HEADS, windows * CALL_SLICES, kw, device="cuda", generator=gen) < density  # noqa: E731
    q = rand(q_len)
    ring_mask, call_mask = mask(windows * RING_SLICES), mask(windows * CALL_SLICES)
    if empty_rows:  # every third query window selects nothing anywhere; the first selects only ring blocks
        ring_mask[:, :, ::3], call_mask[:, :, ::3] = False, False
        call_mask[:, :, 1] = False
    return q, [(rand(ring_len), rand(ring_len), ring_mask), (rand(q_len), rand(q_len), call_mask)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--density", type=float, default=0.5)
    args = ap.parse_args()
    windows = (args.height // TOKEN_PIXELS // WINDOW[1]) * (args.width // TOKEN_PIXELS // WINDOW[2])
    report = {"size": [args.width, args.height], "windows_per_slice": windows, "gpu": torch.cuda.get_device_name()}
    for case, empty in (("random", False), ("empty_rows", True)):
        q, parts = inputs(windows, args.density, empty)
        kept = sum(int(m.sum()) for _, _, m in parts)
        flops = 4 * HEAD_DIM * WINDOW_TOKENS * WINDOW_TOKENS * kept
        oracle = dense_block_sparse(q.float(), [(k.float(), v.float(), m) for k, v, m in parts])
        rows = {}
        for name, kernel in (("flex", flex_block_sparse), ("flash4", flash4_block_sparse)):
            out = kernel(q, parts)
            torch.cuda.synchronize()
            err = (out.float() - oracle).abs()
            ms = time_ms(lambda: kernel(q, parts))
            rows[name] = {"ms": ms, "tflops": flops / ms / 1e9, "max_abs_err": err.max().item(),
                          "mean_abs_err": err.mean().item(), "finite": bool(out.isfinite().all())}  # fmt: skip
            print(f"{case:10s} {name:7s} {ms:7.3f} ms {flops / ms / 1e9:6.0f} TFLOP/s  "
                  f"max|Δ| vs fp32 {rows[name]['max_abs_err']:.2e}  mean {rows[name]['mean_abs_err']:.2e}")  # fmt: skip
        ms = time_ms(lambda: flash4_block_sparse(q, [join_parts(parts)]))  # the bound for one kernel over ring and call at once
        rows["flash4_one_part"] = {"ms": ms, "tflops": flops / ms / 1e9}
        print(f"{case:10s} flash4 over both parts joined (one kernel, no merge): {ms:7.3f} ms {flops / ms / 1e9:6.0f} TFLOP/s")
        diff = (flash4_block_sparse(q, parts).float() - flex_block_sparse(q, parts).float()).abs().max().item()
        rows["flash4_vs_flex_max_abs"] = diff
        report[case] = rows
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
