"""Profile steady-state streaming calls at a given size; prints the top CUDA kernels.

    python benchmarks/profile_call.py [--height 768 --width 1408] [--out trace.txt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_official_models, synthetic_lr_video  # noqa: E402
from flashvsr.pipeline import Upscaler, engine_config, plan_geometry, prepare_frames  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--out")
    args = ap.parse_args()
    models = random_official_models(args.layers, "tiny", "cuda")
    up = Upscaler(models, engine_config("tiny", "cuda", "bfloat16", local_range=11, sparse_ratio=2.0))
    lr = synthetic_lr_video(57, args.height // 4, args.width // 4)
    geo = plan_geometry(args.height // 4, args.width // 4, width=args.width, height=args.height)
    eng = up.engine
    state = eng.start(geo.model_h, geo.model_w, content=geo.content)
    with torch.no_grad():
        prep = lambda a, b: prepare_frames(lr[a:b].cuda(), geo, torch.bfloat16)  # noqa: E731
        eng.push(state, prep(0, 41))  # call 0 and call 1: compiles
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            eng.push(state, prep(41, 57))  # two steady-state calls
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=70)
    print(table)
    if args.out:
        Path(args.out).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
