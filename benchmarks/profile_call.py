"""Profile steady-state streaming calls at a given size; prints the top CUDA kernels and how
busy the GPU was (summed kernel time against the calls' elapsed time).

    python benchmarks/profile_call.py [--height 768 --width 1408] [--compile] [--no-graphs] [--out trace.txt]
        [--stacks 6]   # also the ops' CUDA time by Python call site (6 frames) and by input shape
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_upscaler, synthetic_lr_video  # noqa: E402
from flashvsr.pipeline import plan_geometry, prepare_frames  # noqa: E402

SETTLE_FRAMES = 61  # calls 0–5: compiles, and captures every steady-state slot plan's graph
PROFILED_FRAMES = 16  # two steady-state calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--no-graphs", action="store_true")
    ap.add_argument("--attention-backend", default="auto")
    ap.add_argument("--out")
    ap.add_argument("--stacks", type=int, default=0, help="also group by this many Python frames, and by input shape")
    args = ap.parse_args()
    up = random_upscaler(args.layers, compile=args.compile, cuda_graphs=not args.no_graphs, offload_weights="off",
                         attention_backend=args.attention_backend)  # fmt: skip
    total = SETTLE_FRAMES + PROFILED_FRAMES
    lr = synthetic_lr_video(total, args.height // 4, args.width // 4)
    geo = plan_geometry(args.height // 4, args.width // 4, width=args.width, height=args.height)
    eng = up.engine
    state = eng.start(geo.model_h, geo.model_w, content=geo.content)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    with torch.no_grad():
        prep = lambda a, b: prepare_frames(lr[a:b].cuda(), geo, torch.bfloat16)  # noqa: E731
        eng.push(state, prep(0, SETTLE_FRAMES))
        later = prep(SETTLE_FRAMES, total)
        torch.cuda.synchronize()
        detail = bool(args.stacks)
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU], with_stack=detail,
                     record_shapes=detail) as prof:
            start.record()
            eng.push(state, later)
            end.record()
            torch.cuda.synchronize()
    elapsed = start.elapsed_time(end)
    on_gpu = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]  # kernels and copies
    kernels = sum(e.self_device_time_total for e in on_gpu) / 1e3
    summary = (f"{args.width}×{args.height}, compile {args.compile}, graphs {not args.no_graphs}: "
               f"{len(state.graphs.captured)} graphs; two calls {elapsed:.1f} ms elapsed, "
               f"kernels {kernels:.1f} ms ({100 * kernels / elapsed:.0f} % busy)")  # fmt: skip
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=45, max_name_column_width=70)
    if args.stacks:
        by_site = prof.key_averages(group_by_stack_n=args.stacks)
        table += "\n" + by_site.table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=40,
                                      max_src_column_width=110)
        by_shape = prof.key_averages(group_by_input_shape=True)
        table += "\n" + by_shape.table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=40,
                                       max_shapes_column_width=110)
    print("SUMMARY", summary)
    print(table)
    if args.out:
        Path(args.out).write_text(summary + "\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
