"""Spatial tiling: a large frame as several smaller streams, blended over their overlaps.

Each tile is an independent stream of the same :class:`StreamingEngine` (its own state, its
own LQ crop, the crop of the full frame's noise, its own colour fix); the outputs are blended
with linear ramps across the overlaps. One tile covering the frame is exactly the untiled
engine. With ``offload`` the idle tiles' states wait in host memory, so the device holds the
model plus one tile's state at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import PIXEL_MULTIPLE, VAE_SPATIAL_FACTOR
from .schedule import plan_call
from .state import NoiseSource, SeededNoise, StreamState, move_state
from .stream import StreamingEngine

Box = tuple[int, int, int, int]  # (y0, x0, h, w)
HOST = torch.device("cpu")
RAMP_CENTRE = 0.5  # ramps are sampled at pixel centres, so no weight is ever exactly 0


@dataclass(frozen=True)
class TileGrid:
    """Tile origins over a ``height × width`` model frame; every tile is ``tile_h × tile_w``."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def boxes(self) -> list[Box]:
        return [(y, x, self.tile_h, self.tile_w) for y in self.ys for x in self.xs]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def describe(self) -> str:
        return f"{len(self.xs)}×{len(self.ys)} tiles of {self.tile_w}×{self.tile_h}"


def plan_axis(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Origins of the fewest ``tile``-long pieces covering ``size`` with at least ``overlap``
    shared between neighbours: spread evenly on the 128-pixel grid, the last flush with the end."""
    if tile >= size:
        return (0,)
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile ({tile})")
    stride = tile - overlap
    gaps = -(-(size - tile) // stride)  # pieces − 1
    steps = (size - tile) // PIXEL_MULTIPLE
    return tuple(PIXEL_MULTIPLE * (i * steps // gaps) for i in range(gaps + 1))


def plan_grid(height: int, width: int, tile_h: int, tile_w: int, overlap: int) -> TileGrid:
    for v in (height, width, tile_h, tile_w, overlap):
        if v < 0 or v % PIXEL_MULTIPLE:
            raise ValueError(f"frame, tile and overlap sizes must be multiples of {PIXEL_MULTIPLE}, got {v}")
    tile_h, tile_w = min(tile_h, height), min(tile_w, width)
    ys, xs = plan_axis(height, tile_h, overlap), plan_axis(width, tile_w, overlap)
    return TileGrid(height, width, tile_h, tile_w, ys, xs)


def axis_weights(size: int, origins: tuple[int, ...], tile: int) -> torch.Tensor:
    """(pieces, tile) float64 weights: linear ramps across each overlap, normalised so that
    the pieces' weights sum to 1 at every position of the axis."""
    pos = torch.arange(tile, dtype=torch.float64) + RAMP_CENTRE
    raw = []
    for i, origin in enumerate(origins):
        w = torch.ones(tile, dtype=torch.float64)
        if i > 0:  # rises across the overlap with the previous piece
            w = torch.minimum(w, pos / (origins[i - 1] + tile - origin))
        if i + 1 < len(origins):  # falls across the overlap with the next piece
            w = torch.minimum(w, (tile - pos) / (origin + tile - origins[i + 1]))
        raw.append(w)
    total = torch.zeros(size, dtype=torch.float64)
    for origin, w in zip(origins, raw):
        total[origin : origin + tile] += w
    return torch.stack([w / total[origin : origin + tile] for origin, w in zip(origins, raw)])


def blend_weights(grid: TileGrid) -> list[torch.Tensor]:
    """Per tile (in ``grid.boxes`` order), a (tile_h, tile_w) float32 weight map; the maps of
    all tiles sum to 1 at every pixel of the frame."""
    wy = axis_weights(grid.height, grid.ys, grid.tile_h)
    wx = axis_weights(grid.width, grid.xs, grid.tile_w)
    return [(wy[i][:, None] * wx[j][None, :]).float() for i in range(len(grid.ys)) for j in range(len(grid.xs))]


class SharedNoise:
    """The full frame's noise, drawn once per call and shared by all tiles."""

    def __init__(self, source: NoiseSource):
        self.source = source
        self._key: tuple | None = None
        self._value: torch.Tensor | None = None

    def full(self, start: int, count: int, shape: tuple[int, int, int]) -> torch.Tensor:
        key = (start, count, shape)
        if key != self._key:
            self._key, self._value = key, self.source(start, count, shape)
        return self._value


@dataclass(frozen=True)
class CroppedNoise:
    """A tile's :class:`NoiseSource`: its crop of the full frame's noise (latent pixels)."""

    shared: SharedNoise
    frame_shape: tuple[int, int]  # latent height, width of the full frame
    origin: tuple[int, int]  # latent (y, x) of the tile

    def __call__(self, start: int, count: int, shape: tuple[int, int, int]) -> torch.Tensor:
        channels, h, w = shape
        full = self.shared.full(start, count, (channels, *self.frame_shape))
        y, x = self.origin
        return full[..., y : y + h, x : x + w].contiguous()


@dataclass
class TileStream:
    state: StreamState
    box: Box  # the tile in the model frame
    out_box: Box  # where its output goes in the content box
    weight: torch.Tensor  # (h, w) blend weights of its output


@dataclass
class EngineStream:
    """The untiled path behind the same push/finish interface as :class:`TiledStream`."""

    engine: StreamingEngine
    state: StreamState

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        return self.engine.push(self.state, frames)

    def finish(self) -> torch.Tensor:
        return self.engine.finish(self.state)


class TiledStream:
    """A stream whose frames are processed as overlapping tiles (same push/finish as the engine)."""

    def __init__(
        self,
        engine: StreamingEngine,
        grid: TileGrid,
        content: Box | None = None,
        noise: NoiseSource | None = None,
        offload: bool = False,
    ):
        self.engine, self.grid, self.offload = engine, grid, offload
        self.content = content or (0, 0, grid.height, grid.width)
        self.store = HOST if offload else engine.device  # where frames wait and outputs are blended
        shared = SharedNoise(noise or SeededNoise(engine.config.seed))
        latent = (grid.height // VAE_SPATIAL_FACTOR, grid.width // VAE_SPATIAL_FACTOR)
        self.tiles = [
            self._start_tile(box, weight, CroppedNoise(shared, latent, _latent_origin(box)))
            for box, weight in zip(grid.boxes, blend_weights(grid))
        ]
        self.pending: list[torch.Tensor] = []
        self.received = 0

    def push(self, frames: torch.Tensor) -> torch.Tensor:
        """LQ frames (T, 3, H, W) of the full frame → output frames now final, for the content box.
        Frames wait here until a DiT call can run, so each tile's state moves once per call."""
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, self.grid.height, self.grid.width):
            raise ValueError(
                f"expected LQ frames of shape (T, 3, {self.grid.height}, {self.grid.width}), got {tuple(frames.shape)}"
            )
        self.pending.append(frames.to(self.store))
        self.received += frames.shape[0]
        if self.received < plan_call(self.tiles[0].state.calls).lq_needed:
            return self._blend([self._empty(t) for t in self.tiles])
        return self._run_tiles(lambda state, lq: self.engine.push(state, lq))

    def finish(self) -> torch.Tensor:
        def push_and_finish(state: StreamState, lq: torch.Tensor | None) -> torch.Tensor:
            head = self.engine.push(state, lq) if lq is not None else None
            tail = self.engine.finish(state)
            return tail if head is None else torch.cat([head, tail])

        return self._run_tiles(push_and_finish)

    # -- helpers ---------------------------------------------------------------------------------
    def _start_tile(self, box: Box, weight: torch.Tensor, noise: NoiseSource) -> TileStream:
        inner = _intersect(box, self.content)
        if inner is None:
            raise ValueError(f"tile {box} holds none of the content box {self.content}")
        y, x, h, w = inner
        state = self.engine.start(box[2], box[3], content=(y - box[0], x - box[1], h, w), noise=noise)
        if self.offload:
            move_state(state, HOST)
        local = weight[y - box[0] : y - box[0] + h, x - box[1] : x - box[1] + w]
        out_box = (y - self.content[0], x - self.content[1], h, w)
        return TileStream(state, box, out_box, local.to(self.store))

    def _run_tiles(self, run: Callable[[StreamState, torch.Tensor | None], torch.Tensor]) -> torch.Tensor:
        batch = torch.cat(self.pending) if self.pending else None
        self.pending = []
        outputs = []
        for tile in self.tiles:
            if self.offload:
                move_state(tile.state, self.engine.device)
            y, x, h, w = tile.box
            outputs.append(run(tile.state, None if batch is None else batch[:, :, y : y + h, x : x + w]))
            if self.offload:
                self.engine.settle(tile.state)  # its decoding may still be writing what is parked
                move_state(tile.state, HOST)
        return self._blend(outputs)

    def _blend(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        frames = outputs[0].shape[0]
        _, _, ch, cw = self.content
        out = torch.zeros(frames, 3, ch, cw, device=self.store, dtype=torch.float32)
        for tile, frame in zip(self.tiles, outputs):
            y, x, h, w = tile.out_box
            out[:, :, y : y + h, x : x + w] += frame.to(self.store, torch.float32) * tile.weight
        return out.to(self.engine.dtype)

    def _empty(self, tile: TileStream) -> torch.Tensor:
        return torch.zeros(0, 3, *tile.out_box[2:], device=self.store, dtype=self.engine.dtype)


def _latent_origin(box: Box) -> tuple[int, int]:
    return box[0] // VAE_SPATIAL_FACTOR, box[1] // VAE_SPATIAL_FACTOR


def _intersect(a: Box, b: Box) -> Box | None:
    y0, x0 = max(a[0], b[0]), max(a[1], b[1])
    y1, x1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (y0, x0, y1 - y0, x1 - x0) if y1 > y0 and x1 > x0 else None
