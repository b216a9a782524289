"""Typed configuration objects, one per concern.

They are created at the edge (CLI, UI, Python API, a model folder's ``config.json``) and passed
down; nothing deeper in the package invents sizes or thresholds of its own. The defaults are
the official FlashVSR sizes (SPEC §2, §3, §6, §7) and the reference release's settings (§9).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# Geometry shared by every component: the DiT works on 16×16-pixel tokens (8× VAE downsampling
# followed by a 2×2 patch), 4 frames per latent frame, and attention windows of 2×8×8 tokens.
VAE_SPATIAL_FACTOR = 8
VAE_TEMPORAL_FACTOR = 4
PATCH_SIZE = (1, 2, 2)
TOKEN_PIXELS = VAE_SPATIAL_FACTOR * PATCH_SIZE[1]  # 16
WINDOW = (2, 8, 8)  # (latent frames, token rows, token columns)
WINDOW_TOKENS = WINDOW[0] * WINDOW[1] * WINDOW[2]  # 128
PIXEL_MULTIPLE = TOKEN_PIXELS * WINDOW[1]  # 128: output H and W must be multiples of this

LQProjMode = Literal["buffer", "causal"]
Release = Literal["v1", "v1.1"]
ColorFix = Literal["adain", "wavelet", "none"]
Variant = Literal["tiny", "full"]

# The LR-projection streaming rule of each official release (SPEC §3).
RELEASE_LQ_PROJ_MODE: dict[str, LQProjMode] = {"v1": "buffer", "v1.1": "causal"}


@dataclass(frozen=True)
class DiTConfig:
    """Wan2.1-T2V-1.3B layout (SPEC §2)."""

    dim: int = 1536
    num_layers: int = 30
    num_heads: int = 12
    ffn_dim: int = 8960
    in_channels: int = 16
    out_channels: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    eps: float = 1e-6
    patch_size: tuple[int, int, int] = PATCH_SIZE

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads


@dataclass(frozen=True)
class LQProjConfig:
    """LR projection: pixel-unshuffle, two causal convs, one linear (SPEC §3)."""

    in_channels: int = 3
    unshuffle: int = TOKEN_PIXELS
    hidden1: int = 2048
    hidden2: int = 3072
    out_dim: int = 1536
    kernel: tuple[int, int, int] = (4, 3, 3)
    stride: tuple[int, int, int] = (2, 1, 1)
    num_linear: int = 1
    clip_frames: int = VAE_TEMPORAL_FACTOR
    mode: LQProjMode = "causal"

    @property
    def unshuffled_channels(self) -> int:
        return self.in_channels * self.unshuffle * self.unshuffle

    @property
    def cache_frames(self) -> int:
        """Time steps each conv keeps between clips (its causal padding)."""
        return self.kernel[0] - self.stride[0]


@dataclass(frozen=True)
class TCDecoderConfig:
    """Tiny Conditional Decoder (SPEC §6)."""

    latent_channels: int = 16
    image_channels: int = 3
    channels: tuple[int, int, int] = (512, 256, 128)
    time_growth: tuple[int, int, int] = (1, 2, 2)
    blocks_per_stage: int = 3
    cond_frames: int = VAE_TEMPORAL_FACTOR
    cond_factor: int = VAE_SPATIAL_FACTOR
    residual: bool = False  # add the output to its (upsampled) LQ frame: small models learn detail only
    lq_skip: bool = False  # the full-resolution stage also reads its LQ frame: detail sits where the LQ's edges are
    head_channels: int = 0  # width of the full-resolution convs after the last growth; 0: channels[-1] (official)
    head_memory: bool = False  # the first full-resolution conv also reads the previous frame's input: steadier pairs

    @property
    def head_width(self) -> int:
        return self.head_channels or self.channels[-1]

    @property
    def cond_channels(self) -> int:
        return self.image_channels * self.cond_frames * self.cond_factor**2

    @property
    def frames_per_latent(self) -> int:
        n = 1
        for s in self.time_growth:
            n *= s
        return n


WAN_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal video VAE (SPEC §7)."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = WAN_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN_LATENT_STD


@dataclass(frozen=True)
class StabilizerConfig:
    """The motion-gated recursive filter on output frames (``flashvsr/stabilizer.py``; not in the
    paper). Each output pixel keeps up to ``strength`` of the previous output where the upscaled LQ
    frame has not changed; ``strength`` 0 switches it off (the default: official outputs unchanged)."""

    strength: float = 0.0
    threshold: float = 1.0  # LQ change (0…255, blurred) at which the kept share falls to strength / e
    blur_sigma: float = 2.0  # output pixels: the LQ change map is smoothed so that single noisy pixels do not gate

    def __post_init__(self):
        if not 0 <= self.strength < 1:
            raise ValueError(f"stabilizer strength must be in [0, 1), got {self.strength}")
        if self.threshold <= 0 or self.blur_sigma < 0:
            raise ValueError(f"stabilizer threshold must be > 0 and blur ≥ 0, got {self.threshold}, {self.blur_sigma}")

    @property
    def on(self) -> bool:
        return self.strength > 0


STABILIZER_OFF = StabilizerConfig()
STABILIZER_ON = StabilizerConfig(strength=0.95)  # what ``--stabilize on`` uses where the model recommends nothing
STABILIZE_MODES = ("auto", "on", "off")  # "auto": what the model folder's config.json recommends (else off)


def resolve_stabilizer(mode: str | StabilizerConfig, recommended: StabilizerConfig) -> StabilizerConfig:
    """The filter a stream uses: "auto" takes the model's recommendation, "on" it or the standard
    settings, "off" none; a :class:`StabilizerConfig` is used as it is."""
    if isinstance(mode, StabilizerConfig):
        return mode
    if mode not in STABILIZE_MODES:
        raise ValueError(f"stabilize must be one of {STABILIZE_MODES}, got {mode!r}")
    if mode == "off":
        return STABILIZER_OFF
    return recommended if (recommended.on or mode == "auto") else STABILIZER_ON


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build the networks of one FlashVSR model."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    lq_proj: LQProjConfig = field(default_factory=LQProjConfig)
    tc_decoder: TCDecoderConfig = field(default_factory=TCDecoderConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    release: str = "v1.1"
    stabilizer: StabilizerConfig = STABILIZER_OFF  # what these weights were measured with ("--stabilize auto")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ModelConfig":
        return ModelConfig(
            dit=_build(DiTConfig, d.get("dit", {})),
            lq_proj=_build(LQProjConfig, d.get("lq_proj", {})),
            tc_decoder=_build(TCDecoderConfig, d.get("tc_decoder", {})),
            vae=_build(VAEConfig, d.get("vae", {})),
            release=d.get("release", "v1.1"),
            stabilizer=_build(StabilizerConfig, d.get("stabilizer", {})),
        )


def official_config(release: str = "v1.1", num_layers: int = 30) -> ModelConfig:
    """The released model's sizes, with the LR-projection rule of ``release``."""
    mode = RELEASE_LQ_PROJ_MODE[release]
    return ModelConfig(
        dit=DiTConfig(num_layers=num_layers),
        lq_proj=LQProjConfig(mode=mode),
        release=release,
    )


KV_CACHE_FORMATS = ("model", "fp8")

# Reference resolution behind the `sparse_ratio` → `topk_ratio` rule (SPEC §4.5).
SPARSE_REFERENCE_PIXELS = 768 * 1280


@dataclass(frozen=True)
class SparseAttentionConfig:
    """Locality-constrained sparse attention settings (SPEC §4, §9)."""

    sparse_ratio: float = 2.0
    topk_ratio: float | None = None  # overrides sparse_ratio when given
    local_range: int = 11
    kv_ratio: float = 3.0
    kv_cache: str = "model"  # "model": the compute dtype (exact); "fp8": half the memory, lossy (opt-in)

    def __post_init__(self):
        if self.kv_cache not in KV_CACHE_FORMATS:
            raise ValueError(f"kv_cache must be one of {KV_CACHE_FORMATS}, got {self.kv_cache!r}")

    def topk_ratio_for(self, height: int, width: int) -> float:
        if self.topk_ratio is not None:
            return self.topk_ratio
        return self.sparse_ratio * SPARSE_REFERENCE_PIXELS / (height * width)

    @property
    def kv_slices(self) -> int:
        return int(self.kv_ratio)


DEFAULT_DECODER_FRAME_CHUNK = 1  # TC decoder frames at full resolution at once; 2: ≈2 % faster, +1.3 GB at 1408×768
TILE_AUTO, TILE_OFF = "auto", "off"
DEFAULT_TILE_OVERLAP = PIXEL_MULTIPLE  # one attention window of context shared by neighbouring tiles


@dataclass(frozen=True)
class TilingConfig:
    """Spatial tiling of large frames: each tile is its own stream, blended over the overlaps.

    ``tile`` is "auto" (tiles only when the frame does not fit in free device memory), "off",
    or a (height, width) in model pixels (multiples of 128). ``offload`` keeps idle tiles'
    state in host memory so the device holds one tile's state at a time (slower)."""

    tile: str | tuple[int, int] = TILE_AUTO
    overlap: int = DEFAULT_TILE_OVERLAP
    offload: bool = False
    memory_limit_gb: float = 0.0  # > 0: plan for at most this much device memory in all (a smaller card)

    def __post_init__(self):
        if isinstance(self.tile, str):
            if self.tile not in (TILE_AUTO, TILE_OFF):
                raise ValueError(f"tile must be {TILE_AUTO!r}, {TILE_OFF!r} or (height, width), got {self.tile!r}")
        elif len(self.tile) != 2 or any(v <= 0 or v % PIXEL_MULTIPLE for v in self.tile):
            raise ValueError(f"tile size must be two positive multiples of {PIXEL_MULTIPLE}, got {self.tile}")
        if self.memory_limit_gb < 0:
            raise ValueError(f"memory limit must be positive (GB), got {self.memory_limit_gb}")
        if self.overlap < 0 or self.overlap % PIXEL_MULTIPLE:
            raise ValueError(f"tile overlap must be a multiple of {PIXEL_MULTIPLE} pixels, got {self.overlap}")


OFFLOAD_WEIGHTS_MODES = ("auto", "on", "off")  # "auto": only when a frame would not fit otherwise
LINEAR_FORMATS = ("model", "fp8")  # the DiT blocks' linears: the model dtype (exact) or e4m3 (lossy, opt-in)


@dataclass(frozen=True)
class EngineConfig:
    """How one stream is run: attention settings, decoder, colour fix, numerics."""

    attention: SparseAttentionConfig = field(default_factory=SparseAttentionConfig)
    variant: Variant = "tiny"
    color_fix: ColorFix = "adain"
    seed: int = 0
    dtype: str = "bfloat16"
    device: str = "cpu"
    attention_backend: str = "auto"  # "auto" | "gather" | "dense" | "flex" | "flash4" (optional package)
    decoder_frame_chunk: int = DEFAULT_DECODER_FRAME_CHUNK  # TC decoder frames at a time at each upsampled resolution (memory; exact)
    # torch.compile the DiT blocks around attention, and run the TC decoder's memory blocks with cuDNN's fused
    # bias/ReLU/add epilogues (CUDA; fused element-wise work: the same sums, bf16 rounding differs)
    compile: bool = False
    decoder_channels_last: bool = True  # TC decoder activations and weights in channels-last layout (CUDA; same values)
    cuda_graphs: bool = False  # replay steady-state DiT calls from CUDA graphs (CUDA; exact; pays off only when host-bound)
    # decode each call on a second CUDA stream while the next call's DiT runs (CUDA; exact; frames come out one
    # call later; device memory holds the decoder's and the DiT's activations at once)
    overlap_decode: bool = False
    # copy each call's keys and values into the KV pool on a side CUDA stream, beside the block choice and the
    # layers' matrix work (CUDA; exact: the same copies). None: with overlap_decode (+0.5 % at 1080p, H100)
    kv_copy_stream: bool | None = None
    # write each layer's new keys and values once, to a free slot of the KV pool that then stays theirs, instead of
    # to the spare and again to the ring (half the copies, one more slot; exact). One-call kernels only (flash4,
    # gather); not with CUDA graphs. None: with overlap_decode (+0.7 % at 1080p, H100)
    roaming_kv_slots: bool | None = None
    offload_weights: str = "auto"  # DiT block weights in host memory, streamed per block (exact; copies overlap work)
    linears: str = "model"  # "fp8": the DiT blocks' linears on FP8 tensor cores (changes outputs; opt-in)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    stabilizer: StabilizerConfig = STABILIZER_OFF  # steadies still regions of the output (changes outputs; opt-in)

    @property
    def copies_kv_aside(self) -> bool:
        return self.overlap_decode if self.kv_copy_stream is None else self.kv_copy_stream

    @property
    def roams_kv_slots(self) -> bool:
        return self.overlap_decode if self.roaming_kv_slots is None else self.roaming_kv_slots

    def __post_init__(self):
        if self.offload_weights not in OFFLOAD_WEIGHTS_MODES:
            raise ValueError(f"offload_weights must be one of {OFFLOAD_WEIGHTS_MODES}, got {self.offload_weights!r}")
        if self.linears not in LINEAR_FORMATS:
            raise ValueError(f"linears must be one of {LINEAR_FORMATS}, got {self.linears!r}")
        if self.linears == "fp8" and self.offload_weights == "on":
            raise ValueError("FP8 linears and streamed DiT weights do not go together (FP8 already halves those weights)")


def _build(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**kwargs)
