"""Flicker on a still input: a clip's first frame (bicubic ×4 LR of a centred crop) held for
N frames; any change between consecutive outputs is the model's own flicker (bicubic: 0).

    python benchmarks/still_flicker.py CLIP MODEL_DIR [MODEL_DIR …] [--frames 33] [--crop 512x320]

Prints, per model, the mean |out_t − out_{t−1}| (0…255) over the last half of the frames
(the steady state: the first calls still prime the caches) and the whole per-step series.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.evaluation import EvalConfig, ModelMethod, load_ground_truth, make_lr  # noqa: E402


def frame_steps(model: Path, lr_frame: np.ndarray, frames: int, size: tuple[int, int]) -> np.ndarray:
    """Mean absolute change between consecutive output frames, one value per step."""
    out = ModelMethod(model, EvalConfig())(np.stack([lr_frame] * frames), size)  # the eval's CPU float32 run
    return np.abs(np.diff(out.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--crop", default="512x320", help="WxH of the centred ground-truth crop")
    args = parser.parse_args()
    w, h = (int(v) for v in args.crop.split("x"))
    truth = load_ground_truth(args.clip, 1, 4, (h, w))
    lr = make_lr(truth, EvalConfig())[0]
    for model in args.models:
        steps = frame_steps(model, lr, args.frames, truth.shape[1:3])
        steady = steps[len(steps) // 2 :].mean()
        print(f"{model}: {steady:.3f} steady ({' '.join(f'{s:.2f}' for s in steps)})", flush=True)


if __name__ == "__main__":
    main()
