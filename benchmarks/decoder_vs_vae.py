#!/usr/bin/env python3
"""How close the TC decoder comes to the VAE decoder, and at what cost (training issue figure).

For each ground-truth clip: encode the HR frames with the model's VAE, decode the latents with
the VAE decoder and with the TC decoder (conditioned on the bicubic ×4 LQ frames, upsampled,
as at inference), and report PSNR-Y of each decode against the ground truth, PSNR-Y of the TC
decode against the VAE decode, and the FLOPs of each decoder per output frame (counted by
torch's FlopCounterMode, so the cost figure does not depend on the machine).

    python benchmarks/decoder_vs_vae.py MODEL_DIR CLIP... [--frames 13] [--crop 256]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashvsr.data.degrade import bicubic_downscale  # noqa: E402
from flashvsr.evaluation import load_ground_truth, video_psnr_y  # noqa: E402
from flashvsr.train.stages import lq_condition_frames  # noqa: E402
from flashvsr.weights.loading import load_model  # noqa: E402

SCALE = 4


def to_unit(frames) -> torch.Tensor:
    """(T, H, W, 3) uint8 → (1, 3, T, H, W) in [−1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def counted(fn):
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops()


@torch.no_grad()
def measure(models, clip: Path, frames: int, crop: int) -> dict:
    gt = to_unit(load_ground_truth(clip, frames, SCALE, (crop, crop)))
    t = gt.shape[2]
    lr = bicubic_downscale((gt[0].transpose(0, 1) + 1) / 2, SCALE)  # (T, 3, h, w) in [0, 1]
    lq = torch.nn.functional.interpolate(lr, size=gt.shape[-2:], mode="bicubic", align_corners=False)
    lq = (lq.clamp(0, 1) * 2 - 1).transpose(0, 1)[None]
    latents = models.vae.encode(gt)
    vae_out, vae_flops = counted(lambda: models.vae.decode(latents))
    tc_out, tc_flops = counted(lambda: models.tc_decoder(latents, lq_condition_frames(lq, t)))
    return {
        "clip": clip.stem, "frames": t, "size": list(gt.shape[-2:]),
        "psnr_y_vae_vs_gt": video_psnr_y(vae_out[:, :, :t], gt), "psnr_y_tc_vs_gt": video_psnr_y(tc_out[:, :, :t], gt),
        "psnr_y_tc_vs_vae": video_psnr_y(tc_out[:, :, :t], vae_out[:, :, :t]),
        "gflop_per_frame_vae": vae_flops / t / 1e9, "gflop_per_frame_tc": tc_flops / t / 1e9,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("clips", nargs="+", type=Path)
    p.add_argument("--frames", type=int, default=13, help="ground-truth frames per clip (4n+1)")
    p.add_argument("--crop", type=int, default=256, help="side of the centred crop")
    args = p.parse_args()
    models, report = load_model(args.model, variants=("tiny", "full"), dtype=torch.float32)
    print(report.summary())
    rows = [measure(models, clip, args.frames, args.crop) for clip in args.clips]
    for row in rows:
        print(json.dumps(row))
    mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
    print(json.dumps({k: round(mean(k), 3) for k in rows[0] if k.startswith(("psnr", "gflop"))}))


if __name__ == "__main__":
    main()
