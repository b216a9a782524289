#!/usr/bin/env python3
"""Is the streaming pipeline GPU-bound or host-bound? Profiles a few steady DiT calls through the
product's stream path (``Upscaler.open_stream`` on the engine's own CUDA stream, as the bench) and
measures, from the kernels' own start and end times, how much of the window the GPU was idle, on
any stream and on each one, and before which kernels the idle time falls (a gap before a kernel is
host work that kernel waited for). The profiler adds host work of its own (at 1408×768 on the H100 a
steady call took 173 ms under it against 136 without), so gaps here overstate the host's share: the
bench's host times (`flashvsr bench`) say whether the host or the GPU is the limit.

With ``--find-syncs`` it lists instead where the product's path (``Upscaler.stream``) makes the host
wait for the GPU (torch's sync debug mode), by call site: each one drains the GPU's queue.

    python benchmarks/gpu_idle.py [--height 768 --width 1408] [--compile] [--overlap-decode]
        [--attention-backend auto] [--calls 5] [--find-syncs] [--out summary.txt]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_upscaler, synthetic_lr_video  # noqa: E402
from flashvsr.engine.overlap import running_on  # noqa: E402
from flashvsr.engine.schedule import FRAMES_PER_CALL  # noqa: E402
from flashvsr.pipeline import plan_geometry, prepare_frames  # noqa: E402

SETTLE_FRAMES = 61  # the first call and a few steady ones: compiled, caches full
GAP_US = 5.0  # shorter gaps are the launch pipeline's own spacing, not waiting


def gpu_intervals(trace: Path) -> list[tuple[float, float, int, str]]:
    """(start µs, end µs, stream, name) of every kernel, copy and fill in a chrome trace."""
    events = json.loads(trace.read_text())["traceEvents"]
    kinds = {"kernel", "gpu_memcpy", "gpu_memset"}
    return sorted(
        (e["ts"], e["ts"] + e["dur"], e.get("args", {}).get("stream", e.get("tid")), e["name"])
        for e in events
        if e.get("cat") in kinds and e.get("ph") == "X"
    )


def idle_report(intervals: list[tuple[float, float, int, str]]) -> str:
    if not intervals:
        raise SystemExit("the profiler recorded no GPU activity")
    start, end = intervals[0][0], max(i[1] for i in intervals)
    window = end - start
    idle, causes, reach = 0.0, Counter(), start
    for s, e, _, name in intervals:  # sorted by start: a gap is a stretch no interval covers
        if s - reach > GAP_US:
            idle += s - reach
            causes[name[:90]] += s - reach
        reach = max(reach, e)
    lines = [f"window {window / 1e3:.1f} ms, GPU idle {idle / 1e3:.1f} ms ({100 * idle / window:.1f} %, gaps > {GAP_US} µs)"]
    for stream in sorted({i[2] for i in intervals}, key=str):
        mine = [i for i in intervals if i[2] == stream]
        busy = sum(e - s for s, e, _, _ in mine)
        lines.append(f"  stream {stream}: {len(mine)} kernels, busy {busy / 1e3:.1f} ms ({100 * busy / window:.0f} %)")
    lines.append("idle time before (ms, kernel that waited):")
    lines += [f"  {us / 1e3:7.2f}  {name}" for name, us in causes.most_common(15)]
    return "\n".join(lines)


def sync_sites(run, depth: int = 5) -> Counter:
    """Call sites (innermost ``depth`` frames) of every synchronizing CUDA operation ``run()`` makes."""
    found: Counter = Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" in str(message):
            stack = traceback.extract_stack()[:-1]
            found[" <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack[-depth:]))] += 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--calls", type=int, default=5)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--overlap-decode", action="store_true")
    ap.add_argument("--attention-backend", default="auto")
    ap.add_argument("--decoder-frame-chunk", type=int, default=1)
    ap.add_argument("--find-syncs", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    up = random_upscaler(args.layers, compile=args.compile, overlap_decode=args.overlap_decode,
                         attention_backend=args.attention_backend, decoder_frame_chunk=args.decoder_frame_chunk,
                         offload_weights="off")  # fmt: skip
    total = SETTLE_FRAMES + args.calls * FRAMES_PER_CALL
    lr = synthetic_lr_video(total, args.height // 4, args.width // 4).pin_memory()
    geo = plan_geometry(args.height // 4, args.width // 4, width=args.width, height=args.height)

    if args.find_syncs:
        frames = list(lr.numpy())
        run = lambda: sum(1 for _ in up.stream(frames, width=args.width, height=args.height, batch=FRAMES_PER_CALL))  # noqa: E731
        run()  # compiles
        sites = sync_sites(run)
        report = f"{len(frames)} frames through Upscaler.stream: {sum(sites.values())} synchronizing calls\n"
        report += "\n".join(f"  {n:5d}  {site}" for site, n in sites.most_common(25))
        print(report)
        if args.out:
            Path(args.out).write_text(report + "\n")
        return 0

    def lq(a: int, b: int) -> torch.Tensor:
        return prepare_frames(lr[a:b].cuda(non_blocking=True), geo, up.engine.dtype)

    with torch.no_grad(), running_on(up.first_stream):
        warm_up = up.open_stream(geo)  # compiles
        warm_up.push(lq(0, SETTLE_FRAMES))
        warm_up.finish()
        stream = up.open_stream(geo)
        stream.push(lq(0, SETTLE_FRAMES))
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for i in range(SETTLE_FRAMES, total, FRAMES_PER_CALL):
                stream.push(lq(i, i + FRAMES_PER_CALL))
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        report = idle_report(gpu_intervals(trace))
    head = (f"{args.width}×{args.height}, {args.calls} steady calls, compile {args.compile}, overlap {args.overlap_decode}, "
            f"decoder chunk {args.decoder_frame_chunk}, attention {args.attention_backend}")  # fmt: skip
    print(head + "\n" + report)
    if args.out:
        Path(args.out).write_text(head + "\n" + report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
