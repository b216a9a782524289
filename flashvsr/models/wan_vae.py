"""Wan2.1 causal video VAE (SPEC §7): the Full variant's decoder and the training encoder.

Parameter names match ``Wan2.1_VAE.pth`` (without any ``model.`` prefix). The VAE is causal
in time and runs in chunks — 1 frame then 4 frames per latent when encoding, one latent frame
at a time when decoding — with each causal conv keeping the last 2 frames of its input. That
per-stream state is a :class:`CausalCache` passed in by the caller and keyed by module name.

Written here rather than taken from diffusers: diffusers' ``AutoencoderKLWan`` renames every
key and clears its cache on each ``decode`` call, so it can neither load the official file
as-is nor decode a stream call by call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VAEConfig

CACHE_T = 2  # frames of history each causal conv keeps
FIRST_CHUNK = "first"  # marks a temporal upsampler that has seen only the first chunk


@dataclass
class CausalCache:
    """Per-stream causal history: module name → last input frames (or a first-chunk marker)."""

    slots: dict[str, torch.Tensor | str] = field(default_factory=dict)

    def copy(self) -> "CausalCache":
        return CausalCache(dict(self.slots))


class CausalConv3d(nn.Conv3d):
    """Conv3d with zero padding in space and causal zero padding (front only) in time."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=0):
        super().__init__(c_in, c_out, kernel, stride=stride, padding=0)
        pt, ph, pw = (padding,) * 3 if isinstance(padding, int) else padding
        self.causal_padding = (pw, pw, ph, ph, 2 * pt, 0)
        self.cache_key = ""  # set by WanVAE to the module's name

    def forward(self, x: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        pad = list(self.causal_padding)
        if history is not None and pad[4] > 0:
            x = torch.cat([history.to(x.dtype), x], dim=2)
            pad[4] -= history.shape[2]
        return super().forward(F.pad(x, pad))

    def cached(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        """Run on a chunk, using and then updating this conv's history in ``cache``."""
        if cache is None:
            return self(x)
        history = cache.slots.get(self.cache_key)
        keep = x[:, :, -CACHE_T:]
        if keep.shape[2] < CACHE_T and history is not None:
            keep = torch.cat([history[:, :, -1:], keep], dim=2)
        out = self(x, history)
        cache.slots[self.cache_key] = keep
        return out


class RMSNorm(nn.Module):
    """Channel-first RMS norm, ``normalize(x) · √C · γ``."""

    def __init__(self, dim: int, images: bool = False):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D function to every frame of (B, C, T, H, W)."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))
    return y.unflatten(0, (b, t)).transpose(1, 2)


class NearestUpsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.float(), scale_factor=2.0, mode="nearest-exact").to(x.dtype)


class Resample(nn.Module):
    """Spatial ×2 up/down sampling per frame, plus an optional causal ×2 in time."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(NearestUpsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def _upsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        key = self.time_conv.cache_key
        history = cache.slots.get(key)
        if history is None:  # the first chunk is a single frame: no temporal upsampling
            cache.slots[key] = FIRST_CHUNK
            return x
        keep = x[:, :, -CACHE_T:]
        if keep.shape[2] < CACHE_T:
            prev = torch.zeros_like(keep) if isinstance(history, str) else history[:, :, -1:]
            keep = torch.cat([prev, keep], dim=2)
        x2 = self.time_conv(x, None if isinstance(history, str) else history)
        cache.slots[key] = keep
        b, c2, t, h, w = x2.shape
        return x2.view(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)

    def _downsample_time(self, x: torch.Tensor, cache: CausalCache) -> torch.Tensor:
        key = self.time_conv.cache_key
        history = cache.slots.get(key)
        cache.slots[key] = x[:, :, -1:]
        if history is None:  # the first chunk (one frame) passes through
            return x
        return self.time_conv(torch.cat([history[:, :, -1:], x], dim=2))

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        if self.mode == "upsample3d" and cache is not None:
            x = self._upsample_time(x, cache)
        x = per_frame(self.resample, x)
        if self.mode == "downsample3d" and cache is not None:
            x = self._downsample_time(x, cache)
        return x


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(c_in), nn.SiLU(), CausalConv3d(c_in, c_out, 3, padding=1),
            RMSNorm(c_out), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(c_out, c_out, 3, padding=1),
        )  # fmt: skip
        self.shortcut = CausalConv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer.cached(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        qkv = self.to_qkv(self.norm(x)).view(n, 1, 3 * c, h * w).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.squeeze(1).transpose(1, 2).reshape(n, c, h, w))

    def forward(self, x: torch.Tensor, cache: CausalCache | None = None) -> torch.Tensor:
        return x + per_frame(self._attend, x)


def _run(layers: nn.Sequential, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
    for layer in layers:
        if isinstance(layer, (ResidualBlock, AttentionBlock, Resample)):
            x = layer(x, cache)
        elif isinstance(layer, CausalConv3d):
            x = layer.cached(x, cache)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(c_in, c_out))
                c_in = c_out
            if i != len(cfg.dim_mult) - 1:
                temporal = cfg.temporal_downsample[i]
                layers.append(Resample(c_out, "downsample3d" if temporal else "downsample2d"))
        self.downsamples = nn.Sequential(*layers)
        c = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        self.head = nn.Sequential(RMSNorm(c), nn.SiLU(), CausalConv3d(c, 2 * cfg.z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = self.conv1.cached(x, cache)
        for part in (self.downsamples, self.middle, self.head):
            x = _run(part, x, cache)
        return x


class Decoder3d(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.base_dim * m for m in (mult[-1], *mult[::-1])]
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]), ResidualBlock(dims[0], dims[0]))
        layers: list[nn.Module] = []
        upsample_time = _decoder_temporal(cfg)
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                c_in = c_in // 2  # the previous upsampler halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(c_in, c_out))
                c_in = c_out
            if i != len(mult) - 1:
                layers.append(Resample(c_out, "upsample3d" if upsample_time[i] else "upsample2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: CausalCache | None) -> torch.Tensor:
        x = self.conv1.cached(x, cache)
        for part in (self.middle, self.upsamples, self.head):
            x = _run(part, x, cache)
        return x


def _decoder_temporal(cfg: VAEConfig) -> tuple[bool, ...]:
    """The decoder mirrors the encoder: its upsamplers double time where those halved it."""
    return tuple(cfg.temporal_downsample[::-1])


class WanVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3d(cfg)
        self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg)
        for name, module in self.named_modules():
            if isinstance(module, CausalConv3d):
                module.cache_key = name

    def latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel latent mean and std, shaped to broadcast over (B, C, T, H, W)."""
        as_tensor = lambda v: torch.tensor(v, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)  # noqa: E731
        return as_tensor(self.cfg.latent_mean), as_tensor(self.cfg.latent_std)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.cfg.temporal_downsample)

    def encode_moments(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 1 + 4k, H, W) in [-1, 1] → raw posterior mean and log-variance (B, z, 1 + k, ...)."""
        f = self.temporal_factor
        if (video.shape[2] - 1) % f:
            raise ValueError(f"the VAE encodes 1 + {f}·k frames, got {video.shape[2]}")
        cache = CausalCache()
        chunks = [video[:, :, :1]] + (list(video[:, :, 1:].split(f, dim=2)) if video.shape[2] > 1 else [])
        out = torch.cat([self.encoder(c, cache) for c in chunks], dim=2)
        mu, log_var = self.conv1(out).chunk(2, dim=1)
        return mu, log_var

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self.latent_stats(z)
        return (z - mean) / std

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1 + 4k, H, W) in [-1, 1] → normalised latent means (B, 16, 1 + k, H/8, W/8)."""
        return self.normalize(self.encode_moments(video)[0])

    def start_decode(self) -> CausalCache:
        return CausalCache()

    def decode_step(
        self, cache: CausalCache, latents: torch.Tensor, normalized: bool = True
    ) -> tuple[torch.Tensor, CausalCache]:
        """Decode the next latent frames (B, 16, n, h, w) of a stream → frames in [-1, 1]
        (the stream's first latent gives 1 frame, every other one 4)."""
        cache = cache.copy()
        z = latents
        if normalized:
            mean, std = self.latent_stats(latents)
            z = latents * std + mean
        z = self.conv2(z)
        frames = [self.decoder(z[:, :, i : i + 1], cache) for i in range(z.shape[2])]
        return torch.cat(frames, dim=2).clamp(-1, 1), cache

    def decode(self, latents: torch.Tensor, normalized: bool = True) -> torch.Tensor:
        return self.decode_step(self.start_decode(), latents, normalized)[0]
