#!/usr/bin/env python3
"""Where the peak device memory of a stream goes: for each pipeline stage (and the stream's
first call apart from the rest), the memory held when it starts and the peak inside it.

    python benchmarks/memory_breakdown.py [--height 768 --width 1408 --frames 41] [--compile]
        [--decoder-chunk 2] [--offload-weights off|on]

Official-size random models, as `flashvsr bench`. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_official_models, synthetic_lr_video  # noqa: E402
from flashvsr.config import DEFAULT_DECODER_FRAME_CHUNK  # noqa: E402
from flashvsr.pipeline import Upscaler, engine_config, plan_geometry, prepare_frames  # noqa: E402

GB = 1e9


class MemoryClock:
    """A StageClock that records, per section and call group, held memory at entry and the peak."""

    def __init__(self) -> None:
        self.group = "first call"
        self.rows: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: {"held_gb": 0.0, "peak_gb": 0.0})

    @contextmanager
    def section(self, name: str):
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() / GB
        torch.cuda.reset_peak_memory_stats()
        yield
        torch.cuda.synchronize()
        row = self.rows[(self.group, name)]
        row["held_gb"] = max(row["held_gb"], held)
        row["peak_gb"] = max(row["peak_gb"], torch.cuda.max_memory_allocated() / GB)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--frames", type=int, default=41)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--decoder-chunk", type=int, default=DEFAULT_DECODER_FRAME_CHUNK)
    ap.add_argument("--offload-weights", choices=("off", "on"), default="off")
    args = ap.parse_args()
    models = random_official_models(30, "tiny", "cuda")
    weights_gb = torch.cuda.memory_allocated() / GB
    settings = dict(compile=args.compile, decoder_frame_chunk=args.decoder_chunk, offload_weights=args.offload_weights)
    up = Upscaler(models, engine_config("tiny", "cuda", "bfloat16", local_range=11, sparse_ratio=2.0, **settings))
    resident_gb = torch.cuda.memory_allocated() / GB  # less than weights_gb when they are streamed
    lr = synthetic_lr_video(args.frames, args.height // 4, args.width // 4)
    geo = plan_geometry(args.height // 4, args.width // 4, width=args.width, height=args.height)
    clock = up.engine.clock = MemoryClock()
    state = up.engine.start(geo.model_h, geo.model_w, content=geo.content)
    with torch.no_grad():
        for i in range(0, args.frames, 8):
            clock.group = "first call" if state.calls == 0 else "later calls"
            up.engine.push(state, prepare_frames(lr[i : i + 8].cuda(), geo, torch.bfloat16))
        up.engine.finish(state)
    print(f"weights {weights_gb:.2f} GB ({resident_gb:.2f} GB on the device), {args.width}×{args.height}, "
          f"{args.frames} frames, decoder chunk {args.decoder_chunk}, offload weights {args.offload_weights}")
    for (group, name), row in sorted(clock.rows.items()):
        print(f"{group:12s} {name:10s} held {row['held_gb']:6.2f} GB  peak {row['peak_gb']:6.2f} GB")
    report = {"weights_gb": weights_gb, "resident_gb": resident_gb, "settings": settings, "rows": {f"{g}/{n}": r for (g, n), r in clock.rows.items()}}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
