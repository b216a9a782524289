#!/usr/bin/env python3
"""Where a model's temporal error above bicubic's comes from (CPU; the eval's clips and measure).

    python benchmarks/temporal_bands.py MODEL CLIP... [--crop 512x320 --max-frames 25]

For each clip (bicubic ×4 LR, as ``flashvsr eval``): the temporal and change errors of
bicubic + α·(model − bicubic) for α from 0 to 1 (does any blend toward bicubic beat it?), and
the temporal error of each output's low band (Gaussian σ = 3) and high band (the rest).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.cli import crop_size  # noqa: E402
from flashvsr.evaluation import (  # noqa: E402
    EvalConfig, ModelMethod, frame_metrics, load_ground_truth, make_lr, temporal_errors, upscale_baseline,
)

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LOW_BAND_SIGMA = 3.0
MID_GREY = 128  # the high band is signed: shifted to sit in 0…255 like a frame


def as_frames(x: np.ndarray, offset: float = 0.0) -> np.ndarray:
    return np.clip(np.round(x + offset), 0, 255).astype(np.uint8)


def bands(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low = np.stack([cv2.GaussianBlur(f.astype(np.float32), (0, 0), LOW_BAND_SIGMA) for f in frames])
    return as_frames(low), as_frames(frames.astype(np.float32) - low, MID_GREY)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("clips", type=Path, nargs="+")
    ap.add_argument("--crop", type=crop_size, default=(320, 512))
    ap.add_argument("--max-frames", type=int, default=25)
    args = ap.parse_args()
    cfg = EvalConfig(crop=args.crop, max_frames=args.max_frames)
    model = ModelMethod(args.model, cfg)
    for clip in args.clips:
        gt = load_ground_truth(clip, cfg.max_frames, cfg.scale, cfg.crop)
        lr = make_lr(gt, cfg)
        bic = upscale_baseline("bicubic", lr, gt.shape[1:3]).astype(np.float32)
        sr = model(lr, gt.shape[1:3]).astype(np.float32)
        for a in ALPHAS:
            out = as_frames(bic + a * (sr - bic))
            psnr = frame_metrics(out, gt, cfg.scale)["psnr_y"]
            temporal, change = temporal_errors(out, gt)
            print(f"{clip.stem} alpha {a:.2f}: PSNR-Y {psnr:.2f}, temporal {temporal:.3f}, change {change:.3f}")
        for name, frames in (("bicubic", bic), ("model", sr)):
            low, high = bands(frames)
            print(f"{clip.stem} {name}: temporal error low band {temporal_errors(low, gt)[0]:.3f}, "
                  f"high band {temporal_errors(high, gt)[0]:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
