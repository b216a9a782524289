"""Steady still regions: a motion-gated recursive filter on the output frames (not in the paper).

A small model's added detail shimmers where the picture does not move: it answers the LQ frame's
tiny frame-to-frame changes (sensor noise, codec artefacts) with changes of its own. Where the
upscaled LQ frame has not changed since the previous frame, each output pixel keeps most of the
previous output; where it has changed, the new output passes as it is, so moving content is not
smeared. Causal and per pixel: the stream keeps one previous output and one previous LQ frame.

    change  = blur(|lq_t − lq_{t−1}|, mean over RGB)           (0…255 units)
    kept    = strength · exp(−(change / threshold)²)
    out_t   = kept · out_{t−1} + (1 − kept) · new_t
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import StabilizerConfig

LEVELS_PER_UNIT = 127.5  # frames are in [-1, 1]; the threshold is in 0…255 levels


@dataclass
class StabilizerMemory:
    """The previous frame of one stream: its output (float32) and its upscaled LQ frame."""

    frame: torch.Tensor | None = None  # (3, h, w)
    lq: torch.Tensor | None = None  # (3, h, w)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W), replicate borders; sigma 0 returns x."""
    if sigma <= 0:
        return x
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    return F.conv2d(x, kernel.view(1, 1, -1, 1))


def kept_shares(lq: torch.Tensor, previous_lq: torch.Tensor, cfg: StabilizerConfig) -> torch.Tensor:
    """(T, 1, h, w): how much of the previous output each pixel of each frame keeps, from the change
    of each LQ frame (T, 3, h, w) against the one before it (``previous_lq`` before the first)."""
    before = torch.cat([previous_lq[None], lq[:-1]])
    change = (lq.float() - before.float()).abs().mean(1, keepdim=True) * LEVELS_PER_UNIT
    change = gaussian_blur(change, cfg.blur_sigma)
    return cfg.strength * torch.exp(-((change / cfg.threshold) ** 2))


def stabilize(
    frames: torch.Tensor, lq: torch.Tensor, memory: StabilizerMemory, cfg: StabilizerConfig
) -> tuple[torch.Tensor, StabilizerMemory]:
    """Filter output frames (T, 3, h, w) in [-1, 1], given their upscaled LQ frames (T, 3, h, w),
    continuing from ``memory``; returns the frames (same dtype) and the memory for the next call."""
    if not cfg.on:
        return frames, memory
    out = frames.float()  # a new tensor unless the frames are float32 already
    out = out.clone() if out is frames else out
    start = 0
    if memory.frame is None:  # the stream's first frame has nothing to keep
        memory, start = StabilizerMemory(out[0], lq[0]), 1
    if start < len(out):
        kept = kept_shares(lq[start:], memory.lq, cfg)
        previous = memory.frame
        for t in range(start, len(out)):  # the recursion itself is sequential
            previous = out[t].lerp_(previous, kept[t - start])
    # the LQ frame is a view of the whole call's clip: keep a copy of it alone
    return out.to(frames.dtype), StabilizerMemory(out[-1].clone(), lq[-1].clone())


__all__ = ["StabilizerMemory", "stabilize", "kept_shares", "gaussian_blur"]
