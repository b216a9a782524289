#!/usr/bin/env python3
"""On the GPU: the DiT's weights streamed from host memory give the same frames as resident ones.

    python benchmarks/offload_exact.py [--layers 6 --height 512 --width 768 --frames 25] [--compile]

Official-width random models (as `flashvsr bench`), one Upscaler run with resident weights,
then the same engine with `stream_weights()`: prints whether every output byte is equal, the
device memory the weights took before and after, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_official_models, synthetic_lr_video  # noqa: E402
from flashvsr.pipeline import Upscaler, engine_config  # noqa: E402

GB = 1e9


def add_small_case_arguments(ap: argparse.ArgumentParser, frames: int) -> None:
    """The exactness checks' case: official-width models with few layers, a small clip."""
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("--frames", type=int, default=frames)
    ap.add_argument("--compile", action="store_true")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_small_case_arguments(ap, frames=25)
    args = ap.parse_args()
    models = random_official_models(args.layers, "tiny", "cuda")
    cfg = engine_config("tiny", "cuda", "bfloat16", compile=args.compile, offload_weights="off")
    up = Upscaler(models, cfg)
    lr = synthetic_lr_video(args.frames, args.height // 4, args.width // 4).numpy()
    resident_gb = torch.cuda.memory_allocated() / GB
    resident = np.stack(up.upscale_frames(lr, scale=4))
    up.engine.stream_weights()
    streamed_gb = torch.cuda.memory_allocated() / GB
    streamed = np.stack(up.upscale_frames(lr, scale=4))
    diff = np.abs(resident.astype(np.int16) - streamed.astype(np.int16))
    report = {
        "layers": args.layers, "size": [args.width, args.height], "frames": args.frames, "compile": args.compile,
        "identical": bool((diff == 0).all()), "max_abs_difference": int(diff.max()),
        "allocated_gb_resident": resident_gb, "allocated_gb_streamed": streamed_gb,
    }  # fmt: skip
    print(f"{args.layers} layers, {args.width}×{args.height}, {args.frames} frames, compile {args.compile}: "
          f"identical {report['identical']} (max |Δ| {report['max_abs_difference']}); allocated "
          f"{resident_gb:.2f} GB resident → {streamed_gb:.2f} GB streamed")  # fmt: skip
    report["host_to_device_gb_per_s"] = host_to_device_rate(up.engine.block_weights.host[0])
    print(f"host → device copies of one block ({up.engine.block_weights.host[0].numel() * 2 / 1e6:.0f} MB, pinned): "
          f"{report['host_to_device_gb_per_s']:.1f} GB/s")
    print(json.dumps(report))
    return 0 if report["identical"] else 1


def host_to_device_rate(host: torch.Tensor, repeats: int = 10) -> float:
    """GB/s of copying ``host`` (pinned) to the device, timed with CUDA events."""
    target = torch.empty_like(host, device="cuda")
    target.copy_(host, non_blocking=True)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        target.copy_(host, non_blocking=True)
    end.record()
    end.synchronize()
    return repeats * host.numel() * host.element_size() / (start.elapsed_time(end) / 1e3) / GB


if __name__ == "__main__":
    sys.exit(main())
