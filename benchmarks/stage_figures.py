#!/usr/bin/env python3
"""What each diffusion stage is for, measured on held-out clips (training issue figures).

Given the checkpoints of one training run (Stage 1, 2, 3 and the VAE they used):

- **Stage 2 vs Stage 1.** At fixed noise levels, the flow-matching error of Stage 1 with the
  full attention it was trained with, of the same Stage 1 run under the sparse causal mask
  (LCSA) and causal LR projection used at inference, and of Stage 2 under that mask; plus how
  far Stage 2's denoised prediction lies from Stage 1's (relative MSE).
- **Stage 3 vs the teacher.** The one-step student (sparse causal mask, pure noise in) against
  Stage 1 sampled with 1, 4, 8 and 25 Euler steps from the same noise: latent MSE to the
  VAE-encoded ground truth and PSNR-Y of the VAE decodes against the ground truth.

LQ inputs are bicubic ×4 (the training pipeline's plain mode). Prints one JSON line per clip
and one for the mean.

    python benchmarks/stage_figures.py --config configs/small/stage2.toml --vae VAE \\
        --stage1 RUN/stage1 --stage2 RUN/stage2 --stage3 RUN/stage3 CLIP...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flashvsr.attention.backends import resolve_backend  # noqa: E402
from flashvsr.config import SPARSE_REFERENCE_PIXELS, TOKEN_PIXELS  # noqa: E402
from flashvsr.data.datasets import hr_frames, lq_frames, make_lq  # noqa: E402
from flashvsr.data.degrade import DegradationConfig  # noqa: E402
from flashvsr.evaluation import load_ground_truth, video_psnr_y  # noqa: E402
from flashvsr.models.dit import dense_attention  # noqa: E402
from flashvsr.train.attention import CausalSparseAttention  # noqa: E402
from flashvsr.train.config import load_train_config  # noqa: E402
from flashvsr.train.stages import INFERENCE_TIMESTEP, diffusion_net, load_frozen_vae, mix  # noqa: E402

SCALE = 4
NOISE_LEVELS = (0.25, 0.5, 0.75, 1.0)
TEACHER_STEPS = (1, 4, 8, 25)
BICUBIC = DegradationConfig(mode="bicubic", scale=SCALE)  # the training pipeline's plain mode


def clip_tensors(path: Path, latent_frames: int, crop: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth (1, 3, 4L−3, H, W) and its bicubic ×4 LQ at HR size (1, 3, 4L+1, H, W), in [−1, 1]."""
    gt = load_ground_truth(path, lq_frames(latent_frames), SCALE, (crop, crop))
    hr01 = torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 255
    lq = make_lq(hr01, BICUBIC, seed=0)
    to_video = lambda x: x.transpose(0, 1)[None].to(device)  # noqa: E731
    return to_video(hr01[: hr_frames(latent_frames)] * 2 - 1), to_video(lq)


def shifted_sigmas(steps: int, shift: float) -> list[float]:
    """Noise levels 1 → 0 on the shifted schedule the teacher was trained with."""
    s = torch.linspace(1, 0, steps + 1)
    return (shift * s / (1 + (shift - 1) * s)).tolist()


class Figures:
    def __init__(self, args):
        self.cfg = load_train_config(args.config, {"vae": str(args.vae)})
        self.device = torch.device(args.device)
        self.vae = load_frozen_vae(self.cfg, self.device)
        self.nets = {name: diffusion_net(self.cfg, str(getattr(args, name)), self.device, trainable=False)
                     for name in ("stage1", "stage2", "stage3")}  # fmt: skip
        self.args = args
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def sparse(self, x0: torch.Tensor) -> CausalSparseAttention:
        h, w = x0.shape[-2] * 8, x0.shape[-1] * 8
        topk = self.cfg.sparse.sparse_ratio * SPARSE_REFERENCE_PIXELS / (h * w)
        return CausalSparseAttention(h // TOKEN_PIXELS, w // TOKEN_PIXELS, self.args.local_range, self.args.kv_slices,
                                     topk, resolve_backend(self.cfg.sparse.kernel, self.device, training=True))  # fmt: skip

    def velocity(self, name, x, lq, sigma, attention, causal) -> torch.Tensor:
        t = torch.full((x.shape[0],), sigma * INFERENCE_TIMESTEP, device=self.device)
        with torch.autocast(self.device.type, self.dtype, enabled=self.dtype != torch.float32):
            return self.nets[name](x, lq, t, attention, causal).float()

    @torch.no_grad()
    def measure(self, clip: Path) -> dict:
        gt, lq = clip_tensors(clip, self.args.latent_frames, self.args.crop, self.device)
        x0 = self.vae.encode(gt)
        gen = torch.Generator(device=self.device).manual_seed(self.args.seed)
        noise = torch.randn(x0.shape, generator=gen, device=self.device)
        sparse = self.sparse(x0)
        row: dict = {"clip": clip.name}
        for sigma in NOISE_LEVELS:
            xt, target = mix(x0, noise, torch.tensor([sigma], device=self.device)), noise - x0
            v1 = self.velocity("stage1", xt, lq, sigma, dense_attention, False)
            v1s = self.velocity("stage1", xt, lq, sigma, sparse, True)
            v2s = self.velocity("stage2", xt, lq, sigma, sparse, True)
            row[f"flow_mse@{sigma}"] = {"stage1_full": F.mse_loss(v1, target).item(),
                                        "stage1_sparse_causal": F.mse_loss(v1s, target).item(),
                                        "stage2_sparse_causal": F.mse_loss(v2s, target).item()}  # fmt: skip
            row[f"stage2_vs_stage1_rel@{sigma}"] = (F.mse_loss(v2s, v1) / v1.pow(2).mean()).item()
        student = noise - self.velocity("stage3", noise, lq, 1.0, sparse, True)
        row["student"] = self.quality(student, x0, gt)
        for steps in TEACHER_STEPS:
            row[f"teacher_{steps}"] = self.quality(self.teacher_sample(noise, lq, steps), x0, gt)
        return row

    def teacher_sample(self, noise, lq, steps: int) -> torch.Tensor:
        x = noise
        sigmas = shifted_sigmas(steps, self.cfg.flow.timestep_shift)
        for hi, lo in zip(sigmas[:-1], sigmas[1:]):
            x = x - (hi - lo) * self.velocity("stage1", x, lq, hi, dense_attention, False)
        return x

    def quality(self, latents, x0, gt) -> dict:
        decoded = self.vae.decode(latents)[:, :, : gt.shape[2]]
        return {"latent_mse": F.mse_loss(latents, x0).item(), "psnr_y": video_psnr_y(decoded, gt)}


def mean_rows(rows: list[dict]):
    first = rows[0]
    if isinstance(first, dict):
        return {k: mean_rows([r[k] for r in rows]) for k in first if k != "clip"}
    return round(sum(rows) / len(rows), 5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clips", nargs="+", type=Path, help="ground-truth videos or frame folders (held out)")
    p.add_argument("--config", type=Path, required=True, help="the Stage 2 config (model and sparse settings)")
    p.add_argument("--vae", type=Path, required=True, help="the VAE the stages used (checkpoint or model folder)")
    for stage in ("stage1", "stage2", "stage3"):
        p.add_argument(f"--{stage}", type=Path, required=True)
    p.add_argument("--latent-frames", type=int, default=6)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--local-range", type=int, default=5, help="LCSA local range, in attention windows")
    p.add_argument("--kv-slices", type=int, default=3, help="LCSA cache length in time slices")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    figures = Figures(args)
    rows = [figures.measure(clip) for clip in args.clips]
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"mean": mean_rows(rows)}))


if __name__ == "__main__":
    main()
