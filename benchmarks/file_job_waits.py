#!/usr/bin/env python3
"""Where the thread that feeds the GPU spends a whole file job (`flashvsr upscale`'s path): pushing
frames (launching the GPU's work; its CPU time too), waiting for decoded input, waiting for output
copies from the GPU, waiting for room in the encoder's queue. Times are per 8 frames of one job
after a first one that compiles, for each variant of the encoder:

    python benchmarks/file_job_waits.py [VARIANT ...] [--height 768 --width 1408 --frames 101] [--compile]
        [--overlap-decode] [--cuda-graphs]

VARIANT: ``default`` (the product's settings), ``niceness=N`` (the encoder's threads N lower than the
feeder's; the product uses ENCODER_NICENESS), ``threads=N`` (x264 threads), ``preset=NAME`` (x264's),
``no_encoder`` (frames discarded), ``reserve_core`` (Linux: the feeding thread alone on CPU 0 and its
hyper-thread sibling, the encoder's threads on the others).

Needs PyAV (the bench's input clip and the job's writer).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import flashvsr.jobs as jobs  # noqa: E402
from flashvsr import pipeline  # noqa: E402
from flashvsr.bench import _write_input_clip, random_upscaler, synthetic_lr_video  # noqa: E402
from flashvsr.io import background  # noqa: E402
from flashvsr.io.background import BackgroundWriter  # noqa: E402
from flashvsr.pipeline import Upscaler  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def timed(name: str, fn, clock=time.perf_counter):
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[name] += clock() - start

    return wrapper


def timed_iteration(name: str, make):
    """``make``'s iterator, with the time spent waiting for each item added to SPENT[name]."""

    def wrapper(*args, **kwargs):
        it = iter(make(*args, **kwargs))
        while True:
            start = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                SPENT[name] += time.perf_counter() - start
            yield item

    return wrapper


def instrument() -> None:
    push = Upscaler._push
    Upscaler._push = timed("push (wall)", timed("push (CPU)", push, time.thread_time))
    pipeline.HostFrames.frames = timed("wait for output copies", pipeline.HostFrames.frames)
    BackgroundWriter.write = timed("wait for the encoder's queue", BackgroundWriter.write)
    jobs.read_ahead = timed_iteration("wait for decoded input", jobs.read_ahead)


class NoEncoder:
    """Discards the frames (an empty file stands for the output)."""

    def __init__(self, path: Path):
        path.touch()

    def write(self, frame) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def report(variant: str, frames: int, wall: float, cpu: float) -> None:
    per8 = 1e3 * 8 / frames
    print(f"{variant}: {frames / wall:.1f} FPS; whole job {wall * per8:.1f}, the feeding thread computed {cpu * per8:.1f}")
    print("  " + ", ".join(f"{name} {seconds * per8:.1f}" for name, seconds in SPENT.items()))


ORIGINAL = {"BackgroundWriter": jobs.BackgroundWriter, "_video_spec": jobs._video_spec, "_writer": jobs._writer}
LOWER_PRIORITY = background.lower_thread_priority


def feeder_cpus() -> set[int]:
    """CPU 0 and its hyper-thread siblings."""
    path = "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"
    try:
        text = open(path).read().strip()
    except OSError:
        return {0}
    cpus = set()
    for part in text.split(","):
        a, _, b = part.partition("-")
        cpus.update(range(int(a), int(b or a) + 1))
    return cpus


def reserve_core() -> None:
    """The calling (feeding) thread on CPU 0's core; encoders opened from now on on the rest."""
    mine = feeder_cpus()
    os.sched_setaffinity(0, mine)

    def elsewhere(niceness: int) -> None:
        os.sched_setaffinity(0, set(range(os.cpu_count())) - mine)  # x264's threads inherit it
        LOWER_PRIORITY(niceness)

    background.lower_thread_priority = elsewhere


def apply_variant(variant: str) -> None:
    for name, value in ORIGINAL.items():
        setattr(jobs, name, value)
    background.lower_thread_priority = LOWER_PRIORITY
    os.sched_setaffinity(0, set(range(os.cpu_count())))
    name, _, value = variant.partition("=")
    if name == "niceness":
        jobs.BackgroundWriter = functools.partial(ORIGINAL["BackgroundWriter"], niceness=int(value))
    elif name == "preset":
        jobs._video_spec = lambda job: dataclasses.replace(ORIGINAL["_video_spec"](job), preset=value)
    elif name == "threads":
        jobs._video_spec = lambda job: dataclasses.replace(ORIGINAL["_video_spec"](job), encoder_thread_count=int(value))
    elif name == "reserve_core":
        reserve_core()
    elif name == "no_encoder":
        jobs._writer = lambda job, reader, partial: NoEncoder(partial)
    elif name != "default":
        raise SystemExit(f"unknown variant {variant!r}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", default=["default"])
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--frames", type=int, default=101)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--overlap-decode", action="store_true")
    ap.add_argument("--cuda-graphs", action="store_true")
    ap.add_argument("--attention-backend", default="auto")
    args = ap.parse_args()
    up = random_upscaler(compile=args.compile, overlap_decode=args.overlap_decode, cuda_graphs=args.cuda_graphs,
                         attention_backend=args.attention_backend)  # fmt: skip
    instrument()
    lr = synthetic_lr_video(args.frames, args.height // 4, args.width // 4)
    with tempfile.TemporaryDirectory(prefix="flashvsr-waits-") as folder:
        source, output = _write_input_clip(Path(folder), lr)
        up.upscale_file(source, output, width=args.width, height=args.height, overwrite=True)  # compiles
        print(f"{args.width}×{args.height}, {args.frames} frames, compile {args.compile}, overlap {args.overlap_decode}, "
              f"graphs {args.cuda_graphs}; per 8 frames (ms):")  # fmt: skip
        for variant in args.variants:
            apply_variant(variant)
            SPENT.clear()
            torch.cuda.synchronize()
            start, cpu = time.perf_counter(), time.thread_time()
            up.upscale_file(source, output, width=args.width, height=args.height, overwrite=True)
            wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
            report(variant, args.frames, wall, cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
