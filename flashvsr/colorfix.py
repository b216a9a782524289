"""Colour fix: match each decoded frame's colours to its LQ frame (SPEC §8).

Frames are (B, 3, T, H, W) in [-1, 1]; statistics are per frame and per RGB channel.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

ADAIN_EPS = 1e-5
WAVELET_LEVELS = 5
_BLUR_TAPS = torch.tensor([1.0, 2.0, 1.0])


def _frame_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = x.float().flatten(3)
    mean = flat.mean(dim=-1)[..., None, None]
    std = (flat.var(dim=-1, unbiased=False) + ADAIN_EPS).sqrt()[..., None, None]
    return mean, std


def adain(frames: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """``(x − mean(x)) / std(x) · std(lq) + mean(lq)``, then clamp to [−1, 1]."""
    mean_x, std_x = _frame_stats(frames)
    mean_lq, std_lq = _frame_stats(lq)
    out = (frames.float() - mean_x) / std_x * std_lq + mean_lq
    return out.clamp(-1, 1).to(frames.dtype)


@functools.cache
def _blur_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Made once per device: a copy from the host per blur would drain the GPU's queue each time."""
    return (torch.outer(_BLUR_TAPS, _BLUR_TAPS) / 16).to(device=device, dtype=dtype)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """3×3 [1,2,1]⊗[1,2,1]/16 blur at ``dilation``, replicate padding, on (N, C, H, W)."""
    weight = _blur_kernel(x.device, x.dtype).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(x, weight, groups=x.shape[1], dilation=dilation)


def wavelet_bands(x: torch.Tensor, levels: int = WAVELET_LEVELS) -> tuple[torch.Tensor, torch.Tensor]:
    """À-trous decomposition of (N, C, H, W) → (sum of high-frequency bands, lowest band)."""
    high = torch.zeros_like(x)
    for i in range(levels):
        low = _blur(x, 2**i)
        high = high + (x - low)
        x = low
    return high, x


def wavelet(frames: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """The output's high frequencies plus the LQ frame's lowest band."""
    b, c, t, h, w = frames.shape
    as_images = lambda v: v.float().transpose(1, 2).reshape(b * t, c, h, w)  # noqa: E731
    high, _ = wavelet_bands(as_images(frames))
    _, low = wavelet_bands(as_images(lq))
    out = (high + low).view(b, t, c, h, w).transpose(1, 2)
    return out.clamp(-1, 1).to(frames.dtype)


def color_fix(frames: torch.Tensor, lq: torch.Tensor, method: str) -> torch.Tensor:
    if method == "adain":
        return adain(frames, lq)
    if method == "wavelet":
        return wavelet(frames, lq)
    if method == "none":
        return frames
    raise ValueError(f"unknown colour fix {method!r}: choose adain, wavelet or none")
