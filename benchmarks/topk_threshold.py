#!/usr/bin/env python3
"""On the GPU: ways to find LCSA's top-k threshold (the (k+1)-th largest block probability of
each head's query slice) on the steady-state shapes; all give the same value.

    python benchmarks/topk_threshold.py [--height 768 --width 1408]

``kth_largest`` is the way the project picks by row length (flashvsr/attention/masks.py:
kthvalue below TOPK_FROM_LENGTH, unsorted topk from there). A Triton radix select, one program
per row, was tried and dropped (2026-12-06, H100: 0.084 ms at best at 1408×768 against kthvalue's
0.075, 0.214 at 1920×1080 against topk's 0.107).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.attention import masks  # noqa: E402
from flashvsr.config import TOKEN_PIXELS, SparseAttentionConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flex_options import time_ms  # noqa: E402

HEADS, RING_SLICES = 12, 3
WAYS = {
    "topk_sorted": lambda x, k: x.topk(k + 1, dim=-1, sorted=True).values[..., -1:],
    "topk_unsorted_min": lambda x, k: x.topk(k + 1, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True),
    "sort": lambda x, k: x.sort(dim=-1, descending=True).values[..., k : k + 1],
    "kthvalue": lambda x, k: x.kthvalue(x.shape[-1] - k, dim=-1, keepdim=True).values,
    "kth_largest": masks.kth_largest,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    args = ap.parse_args()
    rows, cols = masks.window_grid(args.height // TOKEN_PIXELS, args.width // TOKEN_PIXELS)
    s = rows * cols
    k = masks.topk_count(s, SparseAttentionConfig().topk_ratio_for(args.height, args.width))
    gen = torch.Generator(device="cuda").manual_seed(0)
    probs = torch.randn(1, HEADS, 1, s * s * (RING_SLICES + 1), device="cuda", generator=gen).softmax(-1)
    k = min(k, probs.shape[-1] - 1)
    want = WAYS["topk_sorted"](probs, k)
    report = {"size": [args.width, args.height], "row": probs.shape[-1], "k": k, "ways": {}}
    for name, way in WAYS.items():
        same = bool(torch.equal(way(probs, k), want))
        report["ways"][name] = {"ms": time_ms(lambda: way(probs, k), repeats=50), "same_threshold": same}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
