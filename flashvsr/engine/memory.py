"""How much device memory a stream needs, and the tiling that makes a frame fit.

The estimate is per model pixel, derived from the model's sizes, so it holds for the official
model and for small test models alike:

    held  = KV rings + LR-projection cache + pending LQ frames + decoder memory   (per pixel)
    peak  = held + the largest transient (DiT activations or TC decoder activations; when the
            decoder overlaps the DiT, EngineConfig.overlap_decode, a call's decoder beside the
            next call's DiT, always a steady one: call 0's, three times as large, runs alone,
            except in tiled streams, where it may run beside another tile's decoder)

Checked against H100 measurements of the official model in bf16 (41-frame streams; model
frames padded to 128; decoder chunk 1; session 7): weights ≈ 3.9 GB; 1408×768 held 9.0 GB, peak
11.1 GB; 1920×1152 held 14.6, peak 18.8; 2560×1536 held 23.0, peak 30.5 (tests/test_tiles.py keeps
them within 5 %). With the DiT's weights streamed from host memory (engine/offload.py) the
1408×768 peak is 8.4 GB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..attention.backends import BACKENDS, takes_columns
from ..attention.lcsa import KVPool, ring_capacity
from ..config import (
    PIXEL_MULTIPLE, TILE_AUTO, TILE_OFF, TOKEN_PIXELS, VAE_SPATIAL_FACTOR, VAE_TEMPORAL_FACTOR, WINDOW, WINDOW_TOKENS,
    EngineConfig,
)  # fmt: skip
from ..models import FlashVSRModels
from ..models.wan_vae import CACHE_T
from .overlap import decodes_beside
from .schedule import FIRST_CALL_LATENTS, LATENTS_PER_CALL, plan_call
from .stream import resolve_dtype, roaming_wanted
from .tiles import TileGrid, plan_grid

GB = 1e9
MB = 1e6
FP32_BYTES = 4  # pooled keys and the blending accumulator are float32
FP8_BYTES = 1  # the fp8 KV cache format
RGB = 3
LQ_FRAMES_HELD = plan_call(1).lq_needed  # pending LQ frames peak just before call 1 runs
OUTPUT_FRAMES_HELD = plan_call(0).decode[1]  # call 0 returns 21 frames at once
DECODER_PAST_FRAMES = 1  # each TC memory block keeps its last input frame
# calibrated on the H100 at 1408×768 with chunks of 1 and 2 frames (11.1 and 12.4 GB peaks, session 7): the TC
# decoder's peak holds ≈2 full-resolution last-stage tensors plus ≈4.9 per chunk frame (activations and
# cuDNN's workspace, which it takes when memory is free and does without on a fuller card)
DECODER_LIVE_FIXED = 2.0
DECODER_LIVE_PER_FRAME = 4.9
DIT_LIVE_DIMS = 5  # residual stream, q, k, v, attention output
DIT_LIVE_FFNS = 2  # the FFN hidden layer before and after its activation
VAE_STAGE_CONVS = 6  # causal convs per Wan VAE decoder stage that keep history (rough, uncalibrated)
VAE_LIVE_COPIES = 4  # full-resolution tensors alive at the Wan VAE decoder's peak (rough, uncalibrated)
FULL_FRAME_WORK = 128  # bytes per full-frame pixel still on the device when tiles are offloaded
# (LQ preparation, tile outputs before blending): an H100 measured +0.4 GB at 1440p, +0.9 GB at 4K
SAFETY_FRACTION = 0.9  # leave a tenth of free memory for fragmentation and convolution workspaces
MIN_TILE = 3 * PIXEL_MULTIPLE  # smaller tiles leave the DiT too little context
STABILIZER_HELD_FP32 = RGB  # the stabilizer's previous output frame (float32); its previous LQ frame is in the model dtype


class NotEnoughMemory(ValueError):
    """Even the smallest tiling does not fit in the device's free memory."""


@dataclass(frozen=True)
class StreamMemory:
    """Estimated device bytes of one stream (weights are reported apart: already loaded)."""

    weights: int
    held: int  # caches kept between calls
    transient: int  # activations of one call, on top of ``held``

    @property
    def stream(self) -> int:
        return self.held + self.transient

    @property
    def peak(self) -> int:
        return self.weights + self.stream


@dataclass(frozen=True)
class TilePlan:
    grid: TileGrid | None  # None: the untiled engine
    offload: bool = False
    needed: int | None = None  # estimated device bytes of the stream(s), weights excluded
    free: int | None = None
    reason: str = ""  # why untiled
    overlap: int = 0
    streamed_weights: bool = False  # the DiT blocks' weights live in host memory (engine.stream_weights)

    def describe(self) -> str:
        budget = f" (needs about {format_bytes(self.needed)} of {format_bytes(self.free)} free)" if self.free else ""
        weights = "; DiT weights streamed from host memory" if self.streamed_weights else ""
        if self.grid is None:
            return f"tiling: none, {self.reason}{budget}{weights}"
        host = ", idle tiles in host memory" if self.offload else ""
        return f"tiling: {self.grid.describe()}, overlap {self.overlap} px{host}{budget}{weights}"


def format_bytes(n: int) -> str:
    return f"{n / GB:.1f} GB" if n >= GB / 10 else f"{n / MB:.1f} MB"


def weights_bytes(models: FlashVSRModels) -> int:
    tensors = [t for m in models.modules().values() for t in (*m.parameters(), *m.buffers())] + [models.context]
    return sum(t.numel() * t.element_size() for t in tensors)


def estimate_stream(
    models: FlashVSRModels, config: EngineConfig, height: int, width: int, tiled: bool = False
) -> StreamMemory:
    """Device memory of one ``height × width`` stream of ``models`` under ``config`` (``tiled``: a tile
    of a tiled stream, whose decoder may run beside another tile's first DiT call)."""
    b = resolve_dtype(config.dtype).itemsize
    pixels = height * width
    decoder_held, decoder_live = _decoder_per_pixel(models, config, b)
    held = _kv_per_pixel(models, config, b) + _lq_per_pixel(models, b) + decoder_held
    if config.stabilizer.on:
        held += STABILIZER_HELD_FP32 * FP32_BYTES + RGB * b
    first_dit = _dit_live_per_pixel(models, b, FIRST_CALL_LATENTS)
    if decodes_beside(torch.device(config.device), config.overlap_decode):
        beside = first_dit if tiled else _dit_live_per_pixel(models, b, LATENTS_PER_CALL)
        transient = max(first_dit, decoder_live + beside)
    else:
        transient = max(first_dit, decoder_live)
    return StreamMemory(weights_bytes(models), math.ceil(held * pixels), math.ceil(transient * pixels))


def _may_roam(config: EngineConfig) -> bool:
    """Whether the stream may roam its KV slots (the engine decides with its kernel; ``auto``, which
    may take FlashAttention-4, counts as one that can)."""
    backend = BACKENDS.get(config.attention_backend)
    return roaming_wanted(config) and (backend is None or takes_columns(backend))


def _kv_per_pixel(models: FlashVSRModels, config: EngineConfig, b: int) -> float:
    """The KV pool: (layers × ring capacity + spares) slices × (k, v) × dim × bytes per cached
    token, plus the float32 pooled keys per window."""
    dit = models.config.dit
    capacity = ring_capacity(config.attention.kv_slices)
    tokens = (dit.num_layers * capacity + KVPool.spares_for(_may_roam(config))) * WINDOW[0] / TOKEN_PIXELS**2
    if config.attention.kv_cache == "fp8":  # one byte per value, plus a scale per head vector
        per_value = FP8_BYTES + b / dit.head_dim
        return dit.dim * tokens * (2 * per_value + FP32_BYTES / WINDOW_TOKENS)
    return dit.dim * tokens * (2 * b + FP32_BYTES / WINDOW_TOKENS)


def _lq_per_pixel(models: FlashVSRModels, b: int) -> float:
    """The LR projection's conv history and the LQ frames waiting for their call."""
    lq = models.config.lq_proj
    conv_history = (lq.unshuffled_channels + lq.hidden1) * lq.cache_frames * b / TOKEN_PIXELS**2
    return conv_history + LQ_FRAMES_HELD * RGB * b


def _dit_live_per_pixel(models: FlashVSRModels, b: int, latents: int) -> float:
    """Activations of a DiT call over ``latents`` latent frames."""
    dit = models.config.dit
    return latents * (DIT_LIVE_DIMS * dit.dim + DIT_LIVE_FFNS * dit.ffn_dim) * b / TOKEN_PIXELS**2


def _decoder_per_pixel(models: FlashVSRModels, config: EngineConfig, b: int) -> tuple[float, float]:
    """(held, transient) bytes per pixel of the decoder the variant uses."""
    if config.variant == "full":
        vae = models.config.vae
        widths = [vae.base_dim * m for m in vae.dim_mult[::-1]]  # coarsest stage first
        held = CACHE_T * b * VAE_STAGE_CONVS * sum(c / _stage_area(i) for i, c in enumerate(widths))
        frames = LATENTS_PER_CALL * VAE_TEMPORAL_FACTOR  # decoded per call, all at full resolution
        return held, VAE_LIVE_COPIES * frames * widths[-1] * b
    tc = models.config.tc_decoder
    held = tc.blocks_per_stage * DECODER_PAST_FRAMES * b * sum(c / _stage_area(i) for i, c in enumerate(tc.channels))
    if tc.head_memory:  # the full-resolution head's previous input, kept like a memory block's
        held += DECODER_PAST_FRAMES * b * tc.channels[-1]
    chunk = config.decoder_frame_chunk or OUTPUT_FRAMES_HELD  # 0: all of call 0's frames at once
    return held, (DECODER_LIVE_FIXED + DECODER_LIVE_PER_FRAME * chunk) * tc.channels[-1] * b


def _stage_area(stage: int) -> int:
    """Frame pixels per position of a decoder stage: stage 0 works at 1/8 scale, each next ×2."""
    return (VAE_SPATIAL_FACTOR >> stage) ** 2


# -- choosing a tiling ---------------------------------------------------------------------------
def device_free_bytes(device: torch.device) -> int | None:
    """Free device memory, counting what torch's allocator has cached but not used; None on
    devices without a known limit (CPU)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def plannable_bytes(device: torch.device, limit_gb: float = 0.0) -> int | None:
    """Free device memory for new streams; with ``limit_gb``, no more than that limit minus what
    is allocated already (the weights), as on a card of that size."""
    free = device_free_bytes(device)
    if free is None or limit_gb <= 0:
        return free
    return max(0, min(free, int(limit_gb * GB) - torch.cuda.memory_allocated(device)))


def enforce_memory_limit(device: torch.device, limit_gb: float) -> None:
    """Make the allocator refuse to go past ``limit_gb`` (so a plan that does not fit fails
    loudly instead of borrowing memory a smaller card would not have)."""
    if device.type == "cuda" and limit_gb > 0:
        total = torch.cuda.get_device_properties(device).total_memory
        index = device.index if device.index is not None else torch.cuda.current_device()  # the call needs an index
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_gb * GB / total), index)


def plan_tiles(free: int | None, height: int, width: int, models: FlashVSRModels, config: EngineConfig) -> TilePlan:
    """The tiling of a ``height × width`` model frame: none when it fits in ``free`` bytes
    (the weights being loaded already), else the largest tiles that fit, with idle tiles in
    host memory if need be; :class:`NotEnoughMemory` when even the smallest tiles do not fit."""
    tiling = config.tiling
    whole = estimate_stream(models, config, height, width)
    if tiling.tile == TILE_OFF:
        return TilePlan(None, needed=whole.stream, free=free, reason="--tile off")
    if tiling.tile != TILE_AUTO:
        grid = plan_grid(height, width, *tiling.tile, tiling.overlap)
        if grid.count == 1:
            return TilePlan(None, needed=whole.stream, free=free, reason="one tile covers the frame")
        return _grid_plan(grid, tiling.offload, free, models, config)
    if free is None:
        return TilePlan(None, needed=whole.stream, reason="no device memory limit")
    if whole.stream <= free * SAFETY_FRACTION and not tiling.offload:
        return TilePlan(None, needed=whole.stream, free=free, reason="the frame fits")
    modes = (True,) if tiling.offload else (False, True)
    grids = candidate_grids(height, width, tiling.overlap)
    plans = [_grid_plan(g, offload, free, models, config) for offload in modes for g in grids]
    fitting = [p for p in plans if p.needed <= free * SAFETY_FRACTION]
    if not fitting:
        smallest = min(plans, key=lambda p: p.needed, default=None)
        raise NotEnoughMemory(_not_enough_message(whole, smallest, free, height, width))
    return min(fitting, key=lambda p: (p.offload, p.grid.count * p.grid.tile_h * p.grid.tile_w, p.grid.count))


def candidate_grids(height: int, width: int, overlap: int) -> list[TileGrid]:
    """Every distinct grid of n × m tiles (tiles at least MIN_TILE, or the frame's side)."""
    grids = {}
    for rows in range(1, height // PIXEL_MULTIPLE + 1):
        for cols in range(1, width // PIXEL_MULTIPLE + 1):
            tile_h, tile_w = _tile_side(height, rows, overlap), _tile_side(width, cols, overlap)
            if tile_h is None or tile_w is None or (rows, cols) == (1, 1):
                continue
            grid = plan_grid(height, width, tile_h, tile_w, overlap)
            if grid.count > 1:
                grids[(grid.tile_h, grid.tile_w)] = grid
    return list(grids.values())


def tiled_bytes(grid: TileGrid, offload: bool, models: FlashVSRModels, config: EngineConfig) -> int:
    """Device bytes of a tiled stream: one tile's activations, the tiles' states (one at a time
    when offloaded) and, unless offloaded, the full frames waiting and being blended."""
    tile = estimate_stream(models, config, grid.tile_h, grid.tile_w, tiled=True)
    if offload:
        return tile.stream + FULL_FRAME_WORK * grid.height * grid.width
    b = resolve_dtype(config.dtype).itemsize
    frame = (LQ_FRAMES_HELD * RGB * b + OUTPUT_FRAMES_HELD * RGB * (FP32_BYTES + b)) * grid.height * grid.width
    return grid.count * tile.held + tile.transient + frame


def _grid_plan(
    grid: TileGrid, offload: bool, free: int | None, models: FlashVSRModels, config: EngineConfig
) -> TilePlan:
    needed = tiled_bytes(grid, offload, models, config)
    return TilePlan(grid, offload, needed, free, overlap=config.tiling.overlap)


def _tile_side(size: int, pieces: int, overlap: int) -> int | None:
    """Tile length for ``pieces`` tiles along ``size`` (None when too small to be useful)."""
    side = -(-(size + (pieces - 1) * overlap) // pieces)
    side = min(size, -(-side // PIXEL_MULTIPLE) * PIXEL_MULTIPLE)
    if pieces > 1 and (side <= overlap or side < MIN_TILE):
        return None
    return side


def _not_enough_message(whole: StreamMemory, smallest: TilePlan | None, free: int, height: int, width: int) -> str:
    tiled = ""
    if smallest is not None:
        host = " with idle tiles in host memory" if smallest.offload else ""
        tiled = f" and still {format_bytes(smallest.needed)} as {smallest.grid.describe()}{host}"
    return (
        f"not enough GPU memory for a {width}×{height} model frame: it needs about {format_bytes(whole.stream)} "
        f"untiled{tiled}, but {format_bytes(free)} is free (model weights {format_bytes(whole.weights)} already "
        f"loaded); try a smaller output (--scale, --width, --height), a smaller --tile, --kv-ratio 2, closing "
        f"other GPU programs, or --device cpu"
    )
