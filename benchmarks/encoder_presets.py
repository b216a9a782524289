#!/usr/bin/env python3
"""What each x264 preset costs and gives for `flashvsr upscale`'s output: the product's writer
(H.264, CRF 18) encodes real frames with each preset; prints the file size, PSNR-Y of the decoded
frames against the frames given, and the encoder's CPU time (all its threads), each against medium's.

    python benchmarks/encoder_presets.py CLIP.mp4 [--frames 48] [--presets medium fast faster veryfast]

CPU time, not wall time: it says how many cores an encoder needs to keep pace with the GPU.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402

from flashvsr.evaluation import psnr, rgb_to_y  # noqa: E402
from flashvsr.io.media import TimedFrame  # noqa: E402
from flashvsr.io.video import VIDEO_CODECS, VideoOutputSpec, VideoReader, VideoWriter  # noqa: E402

RATE = Fraction(30)


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    y = lambda f: rgb_to_y(torch.from_numpy(f).permute(2, 0, 1).double())  # noqa: E731
    return psnr(y(a), y(b))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def encode(frames: list[np.ndarray], path: Path, preset: str) -> float:
    """Encodes ``frames`` to ``path``; the CPU seconds it took."""
    h, w = frames[0].shape[:2]
    start = cpu_seconds()
    writer = VideoWriter(path, VideoOutputSpec(VIDEO_CODECS["h264"], w, h, RATE, 1 / RATE, crf=18, preset=preset))
    for i, frame in enumerate(frames):
        writer.write(TimedFrame(frame, i, 1))
    writer.close()
    return cpu_seconds() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--presets", nargs="+", default=["medium", "fast", "faster", "veryfast"])
    args = ap.parse_args()
    frames = [f.image for _, f in zip(range(args.frames), VideoReader(args.clip).frames())]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="flashvsr-presets-") as tmp:
        for preset in args.presets:
            path = Path(tmp) / f"{preset}.mp4"
            cpu = encode(frames, path, preset)
            decoded = [f.image for f in VideoReader(path).frames()]
            quality = float(np.mean([psnr_y(a, b) for a, b in zip(decoded, frames)]))
            rows[preset] = (path.stat().st_size / len(frames), quality, cpu)
    base_size, _, base_cpu = rows[args.presets[0]]
    h, w = frames[0].shape[:2]
    print(f"{args.clip.name}: {len(frames)} frames, {w}×{h}, H.264 CRF 18 (against {args.presets[0]})")
    for preset, (size, quality, cpu) in rows.items():
        print(f"  {preset:<9s} {size / 1e3:7.1f} kB/frame ({size / base_size:5.2f}×)  PSNR-Y {quality:6.2f} dB  "
              f"CPU time {cpu / base_cpu:5.2f}×")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
