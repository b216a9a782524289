#!/usr/bin/env python3
"""On the GPU: LCSA's block choice (pooling, scores, top-k) compiled against eager, on one
steady-state layer's shapes: how many mask entries differ, and the time of each.

    python benchmarks/choose_blocks_compiled.py [--height 768 --width 1408]

Queries and keys are random with a per-window offset (so windows differ as real ones do).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.attention.lcsa import AttentionPlan, choose_blocks  # noqa: E402
from flashvsr.config import TOKEN_PIXELS, WINDOW_TOKENS, SparseAttentionConfig  # noqa: E402

HEADS, HEAD_DIM, RING_SLICES = 12, 128, 3
sys.path.insert(0, str(Path(__file__).resolve().parent))
from flex_options import time_ms  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    args = ap.parse_args()
    att = SparseAttentionConfig()
    plan = AttentionPlan.build(args.height // TOKEN_PIXELS, args.width // TOKEN_PIXELS, att.local_range,
                               att.topk_ratio_for(args.height, args.width), att.kv_slices, device="cuda")  # fmt: skip
    s = plan.windows_per_slice
    gen = torch.Generator(device="cuda").manual_seed(0)

    def tokens():
        offsets = torch.randn(1, s, 1, HEADS, HEAD_DIM, device="cuda", generator=gen)
        noise = torch.randn(1, s, WINDOW_TOKENS, HEADS, HEAD_DIM, device="cuda", generator=gen)
        return (offsets + 2 * noise).flatten(1, 2).to(torch.bfloat16)

    q, k = tokens(), tokens()
    ring_pooled = torch.randn(1, HEADS, RING_SLICES * s, HEAD_DIM, device="cuda", generator=gen) * 0.2
    cached = torch.arange(RING_SLICES * s, device="cuda")
    inputs = (q, k, ring_pooled, cached, plan.local_mask, s, plan.topk)
    compiled = torch.compile(choose_blocks, dynamic=False)
    (eager_mask, eager_pooled), (fused_mask, fused_pooled) = choose_blocks(*inputs), compiled(*inputs)
    report = {
        "size": [args.width, args.height],
        "mask_entries": eager_mask.numel(),
        "mask_entries_differing": int((eager_mask != fused_mask).sum()),
        "pooled_max_abs_diff": (eager_pooled - fused_pooled).abs().max().item(),
        "eager_ms": time_ms(lambda: choose_blocks(*inputs)),
        "compiled_ms": time_ms(lambda: compiled(*inputs)),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
