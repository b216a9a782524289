"""Choose a model folder's stabilizer settings on a validation clip, never on the evaluation clips.

    python scripts/choose_stabilizer.py MODEL_DIR VALIDATION_CLIP [--frames 25] [--write]

The clip is shrunk ×4 (bicubic) and upscaled once with the stabilizer off; every candidate
setting then filters those frames (flashvsr/stabilizer.py, as the engine does). The choice is
the candidate with the lowest temporal error among those that cost at most MAX_PSNR_COST_DB of
PSNR-Y. ``--write`` stores it in the folder's config.json ("--stabilize auto" then uses it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.config import StabilizerConfig  # noqa: E402
from flashvsr.evaluation import (  # noqa: E402
    EvalConfig, ModelMethod, frame_metrics, load_ground_truth, make_lr, temporal_errors, upscale_baseline,
)
from flashvsr.stabilizer import StabilizerMemory, stabilize  # noqa: E402
from flashvsr.weights.loading import CONFIG_FILE  # noqa: E402

THRESHOLDS = (0.75, 1.0, 1.25, 1.5, 2.0)
STRENGTHS = (0.9, 0.95, 0.98)
BLUR_SIGMA = 2.0
MAX_PSNR_COST_DB = 0.005  # what a steadier picture may cost on the validation clip


def as_unit(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


def filtered(sr: np.ndarray, bicubic: np.ndarray, cfg: StabilizerConfig) -> np.ndarray:
    out, _ = stabilize(as_unit(sr), as_unit(bicubic), StabilizerMemory(), cfg)
    return ((out + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def measure(frames: np.ndarray, gt: np.ndarray) -> tuple[float, float, float]:
    """(PSNR-Y, temporal error, temporal change error), as flashvsr eval reports them."""
    return (frame_metrics(frames, gt, 4)["psnr_y"], *temporal_errors(frames, gt))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("clip", type=Path, help="a video or a folder of numbered frames (ground truth)")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--write", action="store_true", help="store the choice in the model folder's config.json")
    args = ap.parse_args()
    cfg = EvalConfig(max_frames=args.frames, stabilize="off")
    gt = load_ground_truth(args.clip, cfg.max_frames, cfg.scale)
    lr = make_lr(gt, cfg)
    bicubic = upscale_baseline("bicubic", lr, gt.shape[1:3])
    sr = ModelMethod(args.model, cfg)(lr, gt.shape[1:3])
    base, plain = measure(sr, gt), measure(bicubic, gt)
    print(f"bicubic: PSNR-Y {plain[0]:.3f}, temporal {plain[1]:.3f}")
    print(f"off: PSNR-Y {base[0]:.3f}, temporal {base[1]:.3f}, change {base[2]:.3f}")
    best = None
    for threshold, strength in itertools.product(THRESHOLDS, STRENGTHS):
        candidate = StabilizerConfig(strength=strength, threshold=threshold, blur_sigma=BLUR_SIGMA)
        psnr, temporal, change = measure(filtered(sr, bicubic, candidate), gt)
        allowed = base[0] - psnr <= MAX_PSNR_COST_DB
        print(f"threshold {threshold}, strength {strength}: PSNR-Y {psnr:.3f}, temporal {temporal:.3f}, "
              f"change {change:.3f}{'' if allowed else '  (costs too much)'}")  # fmt: skip
        if allowed and (best is None or temporal < best[0]):
            best = (temporal, candidate)
    if best is None:
        print("no candidate is cheap enough: leave the stabilizer off")
        return 1
    chosen = best[1]
    print(f"chosen: strength {chosen.strength}, threshold {chosen.threshold}, blur {chosen.blur_sigma}")
    if args.write:
        path = args.model / CONFIG_FILE
        config = json.loads(path.read_text())
        config["stabilizer"] = {"strength": chosen.strength, "threshold": chosen.threshold, "blur_sigma": chosen.blur_sigma}
        path.write_text(json.dumps(config, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
