#!/usr/bin/env python3
"""Where a file job's time goes without the model: decoding the input, and encoding the output
with the writer `flashvsr upscale` uses, under each encoder threading mode (CPU only).

    python benchmarks/file_job_parts.py [--width 1408 --height 768 --frames 101]

If a mode encodes slower than the GPU upscales (`flashvsr bench`), file jobs wait on the encoder.
Last, how much of its speed a pure-Python loop keeps while another thread encodes with one x264
thread (near 1: PyAV releases the GIL, so the encoder thread does not stall the one launching kernels).
(`VideoOutputSpec.encoder_threads`; file jobs use "AUTO").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import synthetic_lr_video  # noqa: E402
from flashvsr.demo import write_clip  # noqa: E402
from flashvsr.io.media import TimedFrame  # noqa: E402
from flashvsr.io.video import VIDEO_CODECS, VideoOutputSpec, VideoReader, VideoWriter  # noqa: E402

THREAD_MODES = ("SLICE", "FRAME", "AUTO")
RATE = Fraction(30)


def output_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Upscaled-looking frames: the bench's synthetic clip, enlarged by pixel repetition."""
    lr = synthetic_lr_video(n, height // 4, width // 4, seed=0).numpy()
    return [np.ascontiguousarray(f.repeat(4, axis=0).repeat(4, axis=1)) for f in lr]


def h264_writer(path: Path, frames: list[np.ndarray], **threads) -> VideoWriter:
    """The writer file jobs use (H.264, the CLI's defaults) for ``frames``' size; ``threads``: VideoOutputSpec's."""
    h, w = frames[0].shape[:2]
    return VideoWriter(path, VideoOutputSpec(VIDEO_CODECS["h264"], w, h, RATE, 1 / RATE, **threads))


def encode_fps(frames: list[np.ndarray], folder: Path, mode: str) -> float:
    writer = h264_writer(folder / f"out_{mode}.mp4", frames, encoder_threads=mode)
    start = time.perf_counter()
    for i, f in enumerate(frames):
        writer.write(TimedFrame(f, i, 1))
    writer.close()
    return len(frames) / (time.perf_counter() - start)


def python_share_while_encoding(frames: list[np.ndarray], folder: Path, seconds: float = 3.0) -> float:
    """A pure-Python loop's speed while a thread encodes (one x264 thread), over its speed alone."""

    def spin() -> int:
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    alone = spin()
    writer = h264_writer(folder / "gil.mp4", frames, encoder_thread_count=1)  # a core left free
    stop = threading.Event()

    def encode() -> None:
        i = 0
        while not stop.is_set():
            writer.write(TimedFrame(frames[i % len(frames)], i, 1))
            i += 1

    thread = threading.Thread(target=encode)
    thread.start()
    shared = spin()
    stop.set()
    thread.join()
    writer.close()
    return shared / alone


def decode_fps(path: Path) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in VideoReader(path).frames())
    return count / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1408)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--frames", type=int, default=101)
    args = ap.parse_args()
    frames = output_frames(args.frames, args.height, args.width)
    with tempfile.TemporaryDirectory(prefix="flashvsr-io-") as tmp:
        folder = Path(tmp)
        lr = synthetic_lr_video(args.frames, args.height // 4, args.width // 4, seed=0).numpy()
        source = write_clip(folder / "input.mp4", lr, int(RATE), with_tone=True)
        print(f"decode the {args.width // 4}×{args.height // 4} input: {decode_fps(source):.1f} frames/s")
        for mode in THREAD_MODES:
            print(f"encode {args.width}×{args.height} H.264 (CLI defaults), threads {mode}: "
                  f"{encode_fps(frames, folder, mode):.1f} frames/s")  # fmt: skip
        share = python_share_while_encoding(frames[:8], folder)
        print(f"a Python loop keeps {share:.0%} of its speed while a thread encodes (GIL released if near 100 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
