"""Profile steady-state streaming as `flashvsr bench` runs it (prepare, push, output copy) and
sum each CUDA stream's kernel time: how busy each stream is, how much they overlap, and each
stream's top kernels in ms per 8 frames. Unlike profile_call.py's operator table, every kernel
is counted once (device events only).

    python benchmarks/profile_streams.py [--height 1080 --width 1920] [--compile] [--overlap-decode]
        [--[no-]kv-copy-stream] [--out summary.txt]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_upscaler, synthetic_lr_video  # noqa: E402
from flashvsr.engine.overlap import running_on  # noqa: E402
from flashvsr.pipeline import plan_geometry  # noqa: E402

SETTLE_FRAMES = 64  # compiles and reaches the steady state
PROFILED_FRAMES = 16  # two steady-state calls
BATCH = 8
TOP = 25


def busy_ms(intervals: list[tuple[int, int]]) -> float:
    """Length of the union of [start, end) nanosecond intervals, in ms."""
    total, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total / 1e6


def short(name: str) -> str:
    return name if len(name) <= 90 else name[:87] + "..."


def summarise(events, per: float) -> str:
    """``per``: how many 8-frame steps the events cover. The span runs from the first kernel's start to the
    last one's end on any stream (an event on the caller's stream would miss the decoder's last work)."""
    by_stream: dict[int, list] = defaultdict(list)
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CUDA and e.duration_ns() > 0:
            by_stream[e.device_resource_id()].append(e)
    every = [(e.start_ns(), e.end_ns()) for s in by_stream.values() for e in s]
    span = (max(end for _, end in every) - min(start for start, _ in every)) / 1e6
    lines = [f"span {span / per:.1f} ms per 8 frames; some stream busy {busy_ms(every) / per:.1f}"]
    for stream, evs in sorted(by_stream.items(), key=lambda kv: -sum(e.duration_ns() for e in kv[1])):
        total = sum(e.duration_ns() for e in evs) / 1e6
        lines.append(f"\n== stream {stream}: {total / per:.1f} ms of kernels per 8 frames, "
                     f"busy {busy_ms([(e.start_ns(), e.end_ns()) for e in evs]) / per:.1f}")  # fmt: skip
        names: dict[str, list[float]] = defaultdict(list)
        for e in evs:
            names[e.name()].append(e.duration_ns() / 1e6)
        for name, times in sorted(names.items(), key=lambda kv: -sum(kv[1]))[:TOP]:
            lines.append(f"  {sum(times) / per:8.2f} ms  {len(times) / per:6.1f}×  {short(name)}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--overlap-decode", action="store_true")
    ap.add_argument("--kv-copy-stream", action=argparse.BooleanOptionalAction, help="default: with --overlap-decode")
    ap.add_argument("--out")
    args = ap.parse_args()
    up = random_upscaler(compile=args.compile, overlap_decode=args.overlap_decode,
                         kv_copy_stream=args.kv_copy_stream, offload_weights="off")  # fmt: skip
    total = SETTLE_FRAMES + PROFILED_FRAMES
    lr = synthetic_lr_video(total, args.height // 4, args.width // 4)
    geo = plan_geometry(args.height // 4, args.width // 4, width=args.width, height=args.height)
    sink = torch.empty(total + BATCH, geo.out_h, geo.out_w, 3, dtype=torch.uint8).pin_memory()
    with torch.no_grad(), running_on(up.first_stream):
        stream, done = up.open_stream(geo), 0

        def push(a: int, b: int) -> None:
            nonlocal done
            out = stream.push(up.convert.prepare(lr[a:b].cuda(non_blocking=True), geo, up.engine.dtype))
            sink[done : done + out.shape[0]].copy_(up.convert.to_uint8(out), non_blocking=True)
            done += out.shape[0]

        for i in range(0, SETTLE_FRAMES, BATCH):
            push(i, i + BATCH)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(SETTLE_FRAMES, total, BATCH):
                push(i, i + BATCH)
            torch.cuda.synchronize()
    summary = (f"{args.width}×{args.height}, compile {args.compile}, overlap_decode {args.overlap_decode}, "
               f"kv_copy_stream {args.kv_copy_stream}\n")  # fmt: skip
    summary += summarise(prof.profiler.kineto_results.events(), PROFILED_FRAMES / BATCH)
    print(summary)
    if args.out:
        Path(args.out).write_text(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
