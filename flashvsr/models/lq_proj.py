"""LR projection ("LQ proj"): LQ video → tokens added to the DiT input (SPEC §3).

Pixel-unshuffle 16×16, two causal 3D convs (kernel 4×3×3, time stride 2, replicate padding)
each followed by a channel RMS norm and SiLU, and a linear layer to the DiT width. Parameter
names match ``LQ_proj_in.ckpt``.

Streaming runs on clips of 4 LQ frames, one latent frame of tokens per clip. The per-stream
conv caches live in an :class:`LQProjCache` that the caller owns; the two official releases
differ only in how those caches are used (``buffer`` = v1, ``causal`` = v1.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import LQProjConfig
from ..kernels.time_windows import stacked_time_windows


class ChannelRMSNorm(nn.Module):
    """``x / max(‖x‖₂, 1e-12) · √C · γ`` over the channel dim of (B, C, T, H, W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = math.sqrt(channels)
        self.gamma = nn.Parameter(torch.ones(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def pixel_unshuffle_frames(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, T, H, W) → (B, C·f·f, T, H/f, W/f), channel index ``c·f² + dy·f + dx``."""
    b, c, t, h, w = frames.shape
    x = frames.view(b, c, t, h // factor, factor, w // factor, factor)
    x = x.permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * factor * factor, t, h // factor, w // factor)


def time_conv_as_2d(
    conv: nn.Conv3d, x: torch.Tensor, history: torch.Tensor | None = None, front: int = 0, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """``conv`` (unpadded, 3-D) over [``front`` copies of the first step, ``history``, ``x``],
    replicate-padded in space by ``pad``, as one 2-D conv: each output step's window of ``kt``
    input steps is stacked on channels (channel ``c·kt + j``, as the weight flattens). The same
    sums; GPUs run this channels-last 2-D conv about twice as fast as the 3-D one."""
    kt, st = conv.kernel_size[0], conv.stride[0]
    stacked = stacked_time_windows(x, history, front, kt, st, pad)
    y = F.conv2d(stacked, conv.weight.flatten(1, 2), conv.bias, stride=conv.stride[1:])
    return y.unflatten(0, (x.shape[0], -1)).transpose(1, 2)


def norm_silu(norm: ChannelRMSNorm, x: torch.Tensor) -> torch.Tensor:
    return F.silu(norm(x))


@dataclass
class LQProjCache:
    """Per-stream state: the last time steps of each conv's input, and whether primed."""

    conv1: torch.Tensor | None = None
    conv2: torch.Tensor | None = None
    primed: bool = False


class LQProjection(nn.Module):
    def __init__(self, cfg: LQProjConfig):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv3d(cfg.unshuffled_channels, cfg.hidden1, cfg.kernel, stride=cfg.stride)
        self.norm1 = ChannelRMSNorm(cfg.hidden1)
        self.conv2 = nn.Conv3d(cfg.hidden1, cfg.hidden2, cfg.kernel, stride=cfg.stride)
        self.norm2 = ChannelRMSNorm(cfg.hidden2)
        self.linear_layers = nn.ModuleList([nn.Linear(cfg.hidden2, cfg.out_dim) for _ in range(cfg.num_linear)])
        self.compiled_norm_silu = None  # from compile_norms()

    def compile_norms(self, **options) -> None:
        """Compile each conv's RMS norm + SiLU into one kernel (CUDA inference): five passes over the
        conv's output become one; bf16 rounding differs as in any fusion."""
        self.compiled_norm_silu = torch.compile(norm_silu, **options)

    def store_weights_for_2d(self) -> None:
        """Keep each conv's weight (out, in, kt, kh, kw) in memory order (out, kh, kw, in, kt): the
        same values, but the 2-D weight of :func:`time_conv_as_2d` is then a channels-last view, so
        cuDNN stops converting it (≈ 0.45 GB for the official conv2) on every call."""
        for conv in (self.conv1, self.conv2):
            conv.weight.data = conv.weight.data.permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)

    # -- building blocks -------------------------------------------------------------------------
    def unshuffle(self, frames: torch.Tensor) -> torch.Tensor:
        return pixel_unshuffle_frames(frames.to(self.conv1.weight.dtype), self.cfg.unshuffle)

    def _conv(self, conv: nn.Conv3d, norm: ChannelRMSNorm, x: torch.Tensor, history: torch.Tensor | None):
        """Conv over ``[history, x]`` then RMS norm and SiLU. Without history the front is
        padded by repeating the first step; space is always replicate-padded."""
        pad = (self.cfg.kernel[1] // 2, self.cfg.kernel[2] // 2)
        front = self.cfg.cache_frames if history is None else 0
        return (self.compiled_norm_silu or norm_silu)(norm, time_conv_as_2d(conv, x, history, front, pad))

    def to_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, T, h, w) → (B, T·h·w, dim), tokens in (t, y, x) order."""
        return self.linear_layers[0](features.flatten(2).transpose(1, 2))

    # -- streaming -----------------------------------------------------------------------------
    def step(self, cache: LQProjCache, clip: torch.Tensor) -> tuple[torch.Tensor | None, LQProjCache]:
        """One clip (B, 3, 4, H, W) in [-1, 1] → tokens of one latent frame (B, h·w, dim).

        The first clip of a stream only primes the caches and yields ``None``.
        """
        n = self.cfg.cache_frames
        x = self.unshuffle(clip)
        buffer_rule = self.cfg.mode == "buffer"  # v1: a conv's history is its own current input
        y = self._conv(self.conv1, self.norm1, x, x[:, :, -n:] if buffer_rule else cache.conv1)
        new_cache = LQProjCache(conv1=x[:, :, -n:], conv2=y[:, :, -n:], primed=True)
        if not cache.primed:
            return None, new_cache
        z = self._conv(self.conv2, self.norm2, y, y[:, :, -n:] if buffer_rule else cache.conv2)
        return self.to_tokens(z), new_cache

    # -- whole sequences (training) ------------------------------------------------------------
    def forward(self, video: torch.Tensor, causal: bool = True) -> torch.Tensor:
        """A whole LQ video (B, 3, 1 + 4k, H, W) → tokens (B, k·h·w, dim).

        Causal (the v1.1 rule): identical to streaming it clip by clip — frame 0 primes,
        clip j = frames [4j-3, 4j+1) gives the tokens of latent frame j-1. Non-causal (the
        Stage-1 teacher): each conv also sees one step ahead, with replicate padding at the end.
        """
        if self.cfg.mode != "causal":
            raise ValueError("whole-sequence projection is defined for the causal (v1.1) rule only")
        n = self.cfg.cache_frames
        first = video[:, :, :1].expand(-1, -1, self.cfg.clip_frames, -1, -1)
        x = self.unshuffle(torch.cat([first, video[:, :, 1:]], dim=2))
        if not causal:
            y = self._conv(self.conv1, self.norm1, _pad_end(x, n // 2), _repeat_first(x, n // 2))
            z = self._conv(self.conv2, self.norm2, _pad_end(y, n // 2), _repeat_first(y, n // 2))
            return self.to_tokens(z[:, :, 1:])
        y = self._conv(self.conv1, self.norm1, x, None)
        # conv2 never runs on the priming clip: its outputs only seed the history
        z = self._conv(self.conv2, self.norm2, y[:, :, n:], y[:, :, :n])
        return self.to_tokens(z)


def _repeat_first(x: torch.Tensor, n: int) -> torch.Tensor:
    return x[:, :, :1].expand(-1, -1, n, -1, -1)


def _pad_end(x: torch.Tensor, n: int) -> torch.Tensor:
    return torch.cat([x, x[:, :, -1:].expand(-1, -1, n, -1, -1)], dim=2)
