"""LR/HR pairs: the RealBasicVSR-style two-round degradation, or plain bicubic.

Round 1 and round 2 each apply blur (Gaussian, generalised Gaussian, plateau or sinc
kernels, isotropic or not), a random resize, Gaussian or Poisson noise and JPEG; a video
codec pass (PyAV) follows each round, and a final resize to the LR size with a sinc filter
and JPEG in random order. Parameters are drawn once per clip from a seeded generator and
drift slightly from frame to frame, so a clip degrades consistently, as real footage does.

Frames are float tensors (T, 3, H, W) in [0, 1]. Everything but the codec pass runs on the
frames' device (JPEG too: its lossy steps are written in torch), all frames of a clip at once,
so a training GPU can degrade its own batches.
"""

from __future__ import annotations

import functools
import io
import math
import random
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
VIDEO_CODECS = ("libx264", "mpeg4")
# One thread each (data workers are processes already). A seeded degradation must give the same
# frames every run (it is a fixed test set): x264's lookahead, macroblock tree and rate-control
# lookahead made its output vary between runs of the same input, so they are off.
CODEC_OPTIONS = {
    "libx264": {"threads": "1", "x264-params": "threads=1:lookahead-threads=1:sync-lookahead=0:mbtree=0:rc-lookahead=0"},
    "mpeg4": {"threads": "1"},
}


@dataclass(frozen=True)
class RoundConfig:
    """One degradation round (Real-ESRGAN / RealBasicVSR parameter ranges)."""

    blur_prob: float = 1.0
    kernel_sizes: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)
    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sigma: tuple[float, float] = (0.2, 3.0)
    beta_gaussian: tuple[float, float] = (0.5, 4.0)
    beta_plateau: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_up: tuple[float, float] = (1.0, 1.5)
    resize_down: tuple[float, float] = (0.15, 1.0)
    gaussian_noise_prob: float = 0.5
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # on the 0…255 scale
    poisson_scale: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_quality: tuple[int, int] = (30, 95)
    codec_prob: float = 0.3
    codec_bitrate: tuple[float, float] = (1e4, 1e5)  # bits per second at the LR size, RealBasicVSR


ROUND2_DEFAULTS = RoundConfig(
    blur_prob=0.8,
    sigma=(0.2, 1.5),
    resize_probs=(0.3, 0.4, 0.3),
    resize_up=(1.0, 1.2),
    resize_down=(0.3, 1.2),
    noise_sigma=(1.0, 25.0),
    poisson_scale=(0.05, 2.5),
    jpeg_quality=(30, 95),
)


@dataclass(frozen=True)
class DegradationConfig:
    """``mode="realbasicvsr"`` (two rounds) or ``"bicubic"`` (PIL-style ×scale downscale)."""

    mode: str = "realbasicvsr"
    scale: int = 4
    round1: RoundConfig = field(default_factory=RoundConfig)
    round2: RoundConfig = ROUND2_DEFAULTS
    final_sinc_prob: float = 0.8
    drift: float = 0.03  # relative per-frame random walk of continuous parameters
    bicubic_prob: float = 0.0  # share of realbasicvsr clips degraded by plain bicubic instead


# --------------------------------------------------------------------------------------------
# Kernels


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.meshgrid(r, r, indexing="ij")


def anisotropic_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float, kind: str) -> torch.Tensor:
    """Gaussian (beta ignored), generalised Gaussian ``exp(−½ (xᵀΣ⁻¹x)^β)`` or plateau
    ``1 / (1 + (xᵀΣ⁻¹x)^β)`` kernel, normalised to sum 1."""
    yy, xx = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    q = (u / sigma_x) ** 2 + (v / sigma_y) ** 2
    if kind == "gaussian":
        k = torch.exp(-0.5 * q)
    elif kind == "generalized":
        k = torch.exp(-0.5 * q**beta)
    elif kind == "plateau":
        k = 1 / (1 + q**beta)
    else:
        raise ValueError(f"unknown kernel kind {kind!r}")
    return (k / k.sum()).float()


def sinc_kernel(size: int, cutoff: float) -> torch.Tensor:
    """Circular low-pass (jinc) kernel with angular cutoff ``cutoff`` (radians per pixel)."""
    yy, xx = _grid(size)
    r = torch.sqrt(xx**2 + yy**2)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), k)
    return (k / k.sum()).float()


@dataclass(frozen=True)
class KernelParams:
    kind: str  # "sinc" or one of KERNEL_TYPES
    size: int
    sigma_x: float = 1.0
    sigma_y: float = 1.0
    theta: float = 0.0
    beta: float = 1.0
    cutoff: float = math.pi

    def kernel(self) -> torch.Tensor:
        if self.kind == "sinc":
            return sinc_kernel(self.size, self.cutoff)
        shape = {"iso": "gaussian", "aniso": "gaussian"}.get(self.kind, self.kind.split("_")[0])
        return anisotropic_kernel(self.size, self.sigma_x, self.sigma_y, self.theta, self.beta, shape)


def draw_kernel(rng: random.Random, cfg: RoundConfig) -> KernelParams:
    size = rng.choice(cfg.kernel_sizes)
    if rng.random() < cfg.sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        return KernelParams("sinc", size, cutoff=rng.uniform(low, math.pi))
    kind = rng.choices(KERNEL_TYPES, weights=cfg.kernel_probs)[0]
    sx = rng.uniform(*cfg.sigma)
    sy = sx if kind.endswith("iso") and not kind.endswith("aniso") else rng.uniform(*cfg.sigma)
    theta = rng.uniform(0, math.pi) if kind.endswith("aniso") else 0.0
    beta = rng.uniform(*(cfg.beta_plateau if kind.startswith("plateau") else cfg.beta_gaussian))
    return KernelParams(kind, size, sx, sy, theta, beta)


def blur(frames: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) frames blurred by one (k, k) kernel, or frame t by ``kernel[t]`` of (T, k, k)."""
    t, c, h, w = frames.shape
    pad = kernel.shape[-1] // 2
    per_frame = kernel.expand(t, *kernel.shape[-2:]).to(frames)
    weight = per_frame.repeat_interleave(c, 0)[:, None]
    x = F.pad(frames.reshape(1, t * c, h, w), (pad,) * 4, mode="reflect")
    return F.conv2d(x, weight, groups=t * c).view(t, c, h, w)


# --------------------------------------------------------------------------------------------
# Per-clip plans with per-frame drift


@dataclass(frozen=True)
class RoundPlan:
    kernel: KernelParams | None
    resize_scale: float
    resize_mode: str
    gaussian: bool
    noise_level: float  # sigma on the 0…255 scale, or Poisson scale
    gray_noise: bool
    jpeg_quality: int
    codec: str | None
    codec_bitrate: float


def draw_round(rng: random.Random, cfg: RoundConfig) -> RoundPlan:
    kernel = draw_kernel(rng, cfg) if rng.random() < cfg.blur_prob else None
    direction = rng.choices(("up", "down", "keep"), weights=cfg.resize_probs)[0]
    scale = {"up": lambda: rng.uniform(*cfg.resize_up), "down": lambda: rng.uniform(*cfg.resize_down)}.get(
        direction, lambda: 1.0
    )()
    gaussian = rng.random() < cfg.gaussian_noise_prob
    level = rng.uniform(*(cfg.noise_sigma if gaussian else cfg.poisson_scale))
    return RoundPlan(
        kernel=kernel,
        resize_scale=scale,
        resize_mode=rng.choice(RESIZE_MODES),
        gaussian=gaussian,
        noise_level=level,
        gray_noise=rng.random() < cfg.gray_noise_prob,
        jpeg_quality=rng.randint(*cfg.jpeg_quality),
        codec=rng.choice(VIDEO_CODECS) if rng.random() < cfg.codec_prob else None,
        codec_bitrate=rng.uniform(*cfg.codec_bitrate),
    )


def drift_round(plan: RoundPlan, rng: random.Random, amount: float, frames: int) -> list[RoundPlan]:
    """A slow random walk of the continuous parameters, one plan per frame."""
    plans, walk = [], [0.0, 0.0, 0.0]
    for _ in range(frames):
        kernel = plan.kernel
        if kernel is not None and kernel.kind != "sinc":
            kernel = replace(kernel, sigma_x=kernel.sigma_x * (1 + walk[0]), sigma_y=kernel.sigma_y * (1 + walk[0]))
        plans.append(
            replace(
                plan,
                kernel=kernel,
                noise_level=plan.noise_level * (1 + walk[1]),
                jpeg_quality=int(min(100, max(5, round(plan.jpeg_quality * (1 + walk[2]))))),
            )
        )
        walk = [w + rng.gauss(0.0, amount) for w in walk]
    return plans


# --------------------------------------------------------------------------------------------
# Operations


def resize(frames: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    kwargs = {} if mode == "area" else {"align_corners": False, "antialias": True}
    return F.interpolate(frames, size=size, mode=mode, **kwargs).clamp(0, 1)


def add_noise(frames: torch.Tensor, plans: list[RoundPlan], gen: torch.Generator) -> torch.Tensor:
    """Gaussian (colour or gray) or Poisson (shot) noise on (T, 3, H, W) frames, each frame at
    its own plan's level (the kind of noise is the clip's)."""
    plan = plans[0]
    level = torch.tensor([p.noise_level for p in plans], device=frames.device).view(-1, 1, 1, 1)
    shape = (frames.shape[0], 1, *frames.shape[2:]) if plan.gray_noise else frames.shape
    if plan.gaussian:
        noise = torch.randn(shape, generator=gen, device=frames.device) * (level / 255)
    else:
        img = frames.mean(1, keepdim=True) if plan.gray_noise else frames
        peak = 255.0  # photons per unit intensity before scaling
        shot = torch.poisson((img * peak).clamp(min=0), generator=gen) / peak - img
        noise = shot * level
    return (frames + noise).clamp(0, 1)


# JPEG's lossy steps, in torch so they run where the frames are: 8-bit samples, YCbCr with
# 4:2:0 chroma (Pillow's default), 8×8 DCT coefficients divided by the quality-scaled tables of
# ITU-T T.81 Annex K and rounded. The entropy coding after them is lossless, so it is left out.
JPEG_BLOCK = 8
JPEG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
JPEG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *(99,) * 32,
)  # fmt: skip
RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))
CHROMA_OFFSET = 128.0


def jpeg_tables(qualities: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """The luma and chroma quantisation tables, (T, 8, 8) each, scaled the way libjpeg does."""
    q = torch.tensor(qualities, dtype=torch.float64, device=device).clamp(1, 100).view(-1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)

    def scaled(base):
        table = torch.tensor(base, dtype=torch.float64, device=device).view(1, JPEG_BLOCK, JPEG_BLOCK)
        return ((table * scale + 50) / 100).floor().clamp(1, 255).float()

    return scaled(JPEG_LUMA), scaled(JPEG_CHROMA)


@functools.lru_cache(maxsize=None)
def dct_matrix(device: torch.device) -> torch.Tensor:
    """The orthonormal 8-point DCT-II as a matrix: coefficients = D @ block @ Dᵀ (one per device, never written)."""
    k = torch.arange(JPEG_BLOCK, dtype=torch.float64).view(-1, 1)
    n = torch.arange(JPEG_BLOCK, dtype=torch.float64).view(1, -1)
    d = torch.cos(math.pi * (2 * n + 1) * k / (2 * JPEG_BLOCK)) * math.sqrt(2 / JPEG_BLOCK)
    d[0] /= math.sqrt(2)
    return d.float().to(device)


def quantise_blocks(plane: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """(T, h, w) level-shifted samples → the same after DCT, quantisation and inverse DCT;
    edges are padded by repetition to whole blocks, as encoders do, and cropped again."""
    t, h, w = plane.shape
    pad_h, pad_w = -h % JPEG_BLOCK, -w % JPEG_BLOCK
    x = F.pad(plane[:, None], (0, pad_w, 0, pad_h), mode="replicate")[:, 0]
    blocks = x.unflatten(1, (-1, JPEG_BLOCK)).unflatten(3, (-1, JPEG_BLOCK)).transpose(2, 3)  # (T, by, bx, 8, 8)
    d = dct_matrix(plane.device)
    table = tables.view(t, 1, 1, JPEG_BLOCK, JPEG_BLOCK)
    coeffs = (d @ blocks @ d.T / table).round() * table
    x = (d.T @ coeffs @ d).transpose(2, 3).flatten(3, 4).flatten(1, 2)
    return x[:, :h, :w]


def jpeg(frames: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    """A JPEG encode/decode round trip of (T, 3, H, W) frames in [0, 1], frame t at quality
    ``qualities[t]`` (Pillow's scale, 1…100)."""
    h, w = frames.shape[-2:]
    offset = torch.tensor([0.0, CHROMA_OFFSET, CHROMA_OFFSET], device=frames.device).view(1, 3, 1, 1)
    rgb = (frames.clamp(0, 1) * 255).round()
    ycc = (torch.einsum("ij,tjhw->tihw", torch.tensor(RGB_TO_YCBCR, device=frames.device), rgb) + offset).round()
    luma_table, chroma_table = jpeg_tables(qualities, frames.device)
    luma = quantise_blocks(ycc[:, 0] - CHROMA_OFFSET, luma_table)
    chroma = F.avg_pool2d(F.pad(ycc[:, 1:], (0, w % 2, 0, h % 2), mode="replicate"), 2).round()  # 4:2:0
    chroma = torch.stack([quantise_blocks(chroma[:, c] - CHROMA_OFFSET, chroma_table) for c in range(2)], 1)
    chroma = (chroma + CHROMA_OFFSET).round().clamp(0, 255)  # decoded 8-bit chroma planes
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]  # "fancy" upsampling
    luma = (luma + CHROMA_OFFSET).round().clamp(0, 255)
    ycc = torch.cat([luma[:, None], chroma], 1) - offset
    rgb = torch.einsum("ij,tjhw->tihw", torch.tensor(YCBCR_TO_RGB, device=frames.device), ycc)
    return rgb.round().clamp(0, 255) / 255


def video_codec(frames: torch.Tensor, codec: str, bitrate: float) -> torch.Tensor:
    """Encode and decode (T, 3, H, W) through a lossy codec in memory (PyAV), repeatably."""
    import av  # the codec pass needs FFmpeg through PyAV

    t, _, h, w = frames.shape
    even = frames[:, :, : h - h % 2, : w - w % 2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream(codec, rate=25, options=CODEC_OPTIONS[codec])
        stream.width, stream.height = even.shape[-1], even.shape[-2]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = int(bitrate)
        for index, frame in enumerate((even.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            out.mux(stream.encode(picture))
        out.mux(stream.encode())
    buf.seek(0)
    with av.open(buf, mode="r") as inp:
        inp.streams.video[0].thread_count = 1
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    out_frames = torch.from_numpy(np.stack(decoded[:t])).permute(0, 3, 1, 2).to(frames) / 255
    if out_frames.shape[-2:] != frames.shape[-2:]:  # restore a dropped odd row/column
        out_frames = F.pad(out_frames, (0, w - out_frames.shape[-1], 0, h - out_frames.shape[-2]), mode="replicate")
    return out_frames


# --------------------------------------------------------------------------------------------
# The pipeline


@dataclass(frozen=True)
class ClipDegradation:
    """Everything drawn for one clip; applying it is deterministic given ``noise_seed``."""

    round1: list[RoundPlan]
    round2: list[RoundPlan]
    final_sinc: KernelParams | None
    jpeg_last: bool
    noise_seed: int


def draw_clip(cfg: DegradationConfig, frames: int, seed: int) -> ClipDegradation:
    rng = random.Random(seed)
    r1 = drift_round(draw_round(rng, cfg.round1), rng, cfg.drift, frames)
    r2 = drift_round(draw_round(rng, cfg.round2), rng, cfg.drift, frames)
    sinc = None
    if rng.random() < cfg.final_sinc_prob:
        size = rng.choice(cfg.round1.kernel_sizes)
        sinc = KernelParams("sinc", size, cutoff=rng.uniform(math.pi / 3, math.pi))
    return ClipDegradation(r1, r2, sinc, rng.random() < 0.5, rng.randrange(2**31))


def _apply_round(frames: torch.Tensor, plans: list[RoundPlan], size: tuple[int, int], gen) -> torch.Tensor:
    """One round on all frames at once, frame t with its drifted ``plans[t]``."""
    x = frames
    if plans[0].kernel is not None:
        x = blur(x, torch.stack([p.kernel.kernel() for p in plans]))
    x = add_noise(resize(x, size, plans[0].resize_mode), plans, gen)
    x = jpeg(x, [p.jpeg_quality for p in plans])
    if plans[0].codec is not None:
        x = video_codec(x, plans[0].codec, plans[0].codec_bitrate)
    return x


def degrade(hr: torch.Tensor, cfg: DegradationConfig, seed: int) -> torch.Tensor:
    """HR frames (T, 3, H, W) in [0, 1] → LR frames (T, 3, H/scale, W/scale) in [0, 1]."""
    t, _, h, w = hr.shape
    lr_size = (h // cfg.scale, w // cfg.scale)
    if is_plain_bicubic(cfg, seed):
        return bicubic_downscale(hr, cfg.scale)
    plan = draw_clip(cfg, t, seed)
    gen = torch.Generator(device=hr.device).manual_seed(plan.noise_seed)
    s1 = plan.round1[0].resize_scale
    size1 = (max(8, round(h * s1)), max(8, round(w * s1)))
    x = _apply_round(hr, plan.round1, size1, gen)
    s2 = plan.round2[0].resize_scale
    size2 = (max(8, round(h / cfg.scale * s2)), max(8, round(w / cfg.scale * s2)))
    x = _apply_round(x, plan.round2, size2, gen)
    return _final_resize(x, plan, lr_size)


def is_plain_bicubic(cfg: DegradationConfig, seed: int) -> bool:
    """Whether the clip of ``seed`` gets plain bicubic (``mode="bicubic"``, or the
    ``bicubic_prob`` share of realbasicvsr clips)."""
    if cfg.mode not in ("bicubic", "realbasicvsr"):
        raise ValueError(f"unknown degradation mode {cfg.mode!r}: choose realbasicvsr or bicubic")
    return cfg.mode == "bicubic" or random.Random(seed ^ 0x5EED).random() < cfg.bicubic_prob


def _final_resize(x: torch.Tensor, plan: ClipDegradation, lr_size: tuple[int, int]) -> torch.Tensor:
    """Resize to the LR size plus the optional sinc filter, and JPEG, in a random order."""
    mode = plan.round2[0].resize_mode

    def resize_and_sinc(v):
        v = resize(v, lr_size, mode)
        return blur(v, plan.final_sinc.kernel()).clamp(0, 1) if plan.final_sinc is not None else v

    def compress(v):
        return jpeg(v, [p.jpeg_quality for p in plan.round2])

    return compress(resize_and_sinc(x)) if plan.jpeg_last else resize_and_sinc(compress(x))


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The classic ×scale bicubic LR (antialiased, like MATLAB's and PIL's imresize)."""
    h, w = hr.shape[-2:]
    lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return (lr.clamp(0, 1) * 255).round() / 255
