"""From low-resolution frames to super-resolved frames: the Python API.

    LR uint8 frames ─► bicubic ×scale (PIL-exact) ─► pad to multiples of 128 ─► engine
    engine ─► crop to the requested size ─► uint8 frames

The reference centre-crops to multiples of 128 and drops trailing frames; here the frame is
padded instead, and the engine returns exactly one output frame per input frame.

    from flashvsr import Upscaler
    up = Upscaler.load("FlashVSR-v1.1", device="cuda")     # or Upscaler.load() for the bundled model
    for frame in up.stream(frames, scale=4):               # numpy (H, W, 3) uint8 frames in
        ...                                                # numpy (4H, 4W, 3) uint8 frames out
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .config import (
    DEFAULT_DECODER_FRAME_CHUNK, DEFAULT_TILE_OVERLAP, PIXEL_MULTIPLE, STABILIZER_OFF, TILE_AUTO, EngineConfig,
    SparseAttentionConfig, StabilizerConfig, TilingConfig, resolve_stabilizer,
)  # fmt: skip
from .engine.memory import NotEnoughMemory, TilePlan, enforce_memory_limit, plan_tiles, plannable_bytes
from .engine.overlap import first_stream_for, running_on
from .engine.state import NoiseSource
from .engine.stream import StreamingEngine, model_frame_size, resolve_dtype
from .engine.tiles import EngineStream, TiledStream
from .models import FlashVSRModels
from .transfer import to_device, to_pinned_host

MAX_OUTPUT_PIXELS = 8192 * 8192  # refuse absurd sizes before allocating anything
PIXEL_MAX = 255.0


@dataclass(frozen=True)
class Geometry:
    """Sizes of one upscaling job: input, output (what the user gets) and model frame."""

    in_h: int
    in_w: int
    out_h: int
    out_w: int
    model_h: int
    model_w: int

    @property
    def content(self) -> tuple[int, int, int, int]:
        return (0, 0, self.out_h, self.out_w)


def plan_geometry(
    in_h: int,
    in_w: int,
    scale: float | None = 4.0,
    width: int | None = None,
    height: int | None = None,
    even: bool = False,
) -> Geometry:
    """Output size from a scale factor or a target width/height (the other side keeps the
    aspect ratio); ``even`` rounds both sides to even numbers (yuv420 video codecs)."""
    if in_h <= 0 or in_w <= 0:
        raise ValueError(f"input size {in_w}×{in_h} is empty")
    if width or height:
        if width and height:
            out_w, out_h = width, height
        elif width:
            out_w, out_h = width, round(in_h * width / in_w)
        else:
            out_w, out_h = round(in_w * height / in_h), height
    else:
        if scale is None or not math.isfinite(scale) or scale < 1:
            raise ValueError(f"scale must be a number ≥ 1, got {scale}")
        out_w, out_h = round(in_w * scale), round(in_h * scale)
    if even:
        out_w, out_h = out_w + out_w % 2, out_h + out_h % 2
    if out_w < in_w or out_h < in_h:
        raise ValueError(f"output {out_w}×{out_h} would be smaller than the input {in_w}×{in_h}")
    if out_w * out_h > MAX_OUTPUT_PIXELS:
        raise ValueError(f"output {out_w}×{out_h} is too large (limit {MAX_OUTPUT_PIXELS} pixels)")
    model_h, model_w = model_frame_size(out_h, out_w)
    return Geometry(in_h, in_w, out_h, out_w, model_h, model_w)


def bicubic_resize_u8(frames: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Bicubic resize of (T, 3, H, W) uint8-valued floats exactly as PIL does it: a width pass
    then a height pass (Keys a = −0.5), each rounded and clipped to 0…255."""
    x = frames.float()
    if x.shape[-1] != out_w:
        x = F.interpolate(x, size=(x.shape[-2], out_w), mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, PIXEL_MAX)
    if x.shape[-2] != out_h:
        x = F.interpolate(x, size=(out_h, out_w), mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, PIXEL_MAX)
    return x


def prepare_frames(frames: torch.Tensor, geo: Geometry, dtype: torch.dtype) -> torch.Tensor:
    """LR frames (T, H, W, 3) uint8 → LQ model frames (T, 3, model_h, model_w) in [-1, 1]."""
    x = bicubic_resize_u8(frames.permute(0, 3, 1, 2), geo.out_h, geo.out_w)
    pad_h, pad_w = geo.model_h - geo.out_h, geo.model_w - geo.out_w
    if pad_h or pad_w:
        mode = "reflect" if pad_h < geo.out_h and pad_w < geo.out_w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return (x / PIXEL_MAX * 2 - 1).to(dtype)


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, h, w) in [-1, 1] → (T, h, w, 3) uint8."""
    return ((frames.float().clamp(-1, 1) + 1) * (PIXEL_MAX / 2)).round().to(torch.uint8).permute(0, 2, 3, 1)


@dataclass(frozen=True)
class FrameConversions:
    """A job's two element-wise edges: LR uint8 frames → LQ model frames, output frames → uint8.
    Compiled (CUDA with ``compile``), each runs as a kernel or two instead of about ten passes over
    full-size float32 frames, with the same values (the resizes stay torch's own kernels)."""

    prepare: Callable[[torch.Tensor, Geometry, torch.dtype], torch.Tensor] = prepare_frames
    to_uint8: Callable[[torch.Tensor], torch.Tensor] = to_uint8

    @staticmethod
    def build(device: torch.device, compile: bool) -> FrameConversions:
        if not compile or device.type != "cuda":
            return FrameConversions()
        return FrameConversions(torch.compile(prepare_frames), torch.compile(to_uint8))


class Upscaler:
    """A loaded model plus engine settings; upscales any number of streams, one at a time."""

    def __init__(self, models: FlashVSRModels, config: EngineConfig):
        self.config = config
        self.device = torch.device(config.device)
        enforce_memory_limit(self.device, config.tiling.memory_limit_gb)
        self.engine = StreamingEngine(models.to(self.device, resolve_dtype(config.dtype)), config)
        self.first_stream = first_stream_for(self.device, config.overlap_decode)  # the engine's own CUDA stream, if any
        self.convert = FrameConversions.build(self.device, config.compile)
        self.models = models
        self.announce: Callable[[str], None] | None = None  # told which tiling each stream uses (the CLI prints it)

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        release: str | None = None,
        variant: str = "tiny",
        device: str | None = None,
        dtype: str | None = None,
        prompt: str | Path | None = None,
        **settings,
    ) -> "Upscaler":
        """Load a weights folder (official v1/v1.1 or this project's; default: the bundled
        model) and build an engine. ``settings`` are :class:`EngineConfig` /
        :class:`SparseAttentionConfig` fields (``sparse_ratio``, ``local_range``, ``color_fix``…);
        ``stabilize`` is "auto" (what the model folder recommends), "on", "off" or a
        :class:`StabilizerConfig`."""
        from .weights.loading import load_model
        from .weights.bundled import default_model_folder

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        folder = Path(weights) if weights else default_model_folder()
        models, report = load_model(folder, release=release, variants=(variant,), dtype=resolve_dtype(dtype), prompt=prompt)
        upscaler = cls(models, model_engine_config(models, variant=variant, device=device, dtype=dtype, **settings))
        upscaler.report = report
        return upscaler

    def geometry(self, in_h: int, in_w: int, scale=4.0, width=None, height=None, even=False) -> Geometry:
        return plan_geometry(in_h, in_w, scale, width, height, even)

    @torch.no_grad()
    def stream(
        self,
        frames: Iterable[np.ndarray | torch.Tensor],
        scale: float | None = 4.0,
        width: int | None = None,
        height: int | None = None,
        even: bool = False,
        noise: NoiseSource | None = None,
        batch: int = 1,
    ) -> Iterator[np.ndarray]:
        """Upscale an iterable of (H, W, 3) uint8 frames, yielding (h, w, 3) uint8 frames as
        soon as they are final. Exactly one output frame per input frame, in order.

        On a GPU, a push's frames are copied to host memory without waiting and handed out after
        :data:`CALLS_AHEAD` later pushes that run a DiT call: the host never waits while the GPU has
        little queued."""
        it = iter(frames)
        first = next(it, None)
        if first is None:
            raise ValueError("no frames to upscale")
        first = _as_u8_tensor(first)
        geo = plan_geometry(first.shape[0], first.shape[1], scale, width, height, even)
        with running_on(self.first_stream):
            stream = self.open_stream(geo, noise)
        pending, copying = [first], HandOver()  # LR frames not pushed yet; output frames on their way to the host
        for frame in it:
            frame = _as_u8_tensor(frame)
            if frame.shape != first.shape:
                raise ValueError(f"frame size changed from {tuple(first.shape)} to {tuple(frame.shape)}")
            pending.append(frame)
            if len(pending) >= batch:
                yield from copying.add(self._push(stream, pending, geo))
                pending = []
        if pending:
            yield from copying.add(self._push(stream, pending, geo))
        with running_on(self.first_stream):
            yield from copying.add(HostFrames.copy_of(stream.finish(), self.convert.to_uint8))
        yield from copying.rest()

    def tile_plan(self, geo: Geometry) -> TilePlan:
        """Untiled when the frame fits in free device memory, else tiles (raises
        :class:`flashvsr.engine.memory.NotEnoughMemory` when nothing fits). Exact first: with
        ``offload_weights="auto"``, a frame that does not fit as it is moves the DiT's weights
        to host memory (streamed per block, same outputs) before it is cut into tiles."""
        try:
            plan = self._plan_tiles(geo)
            if plan.grid is None or not self._may_stream_weights():
                return plan
        except NotEnoughMemory:
            if not self._may_stream_weights():
                raise
        self.engine.stream_weights()
        return self._plan_tiles(geo)

    def _plan_tiles(self, geo: Geometry) -> TilePlan:
        free = plannable_bytes(self.device, self.config.tiling.memory_limit_gb)
        plan = plan_tiles(free, geo.model_h, geo.model_w, self.models, self.config)
        return dataclasses.replace(plan, streamed_weights=self.engine.streams_weights)

    def _may_stream_weights(self) -> bool:
        auto = self.config.offload_weights == "auto" and self.config.tiling.tile == TILE_AUTO
        return auto and self.engine.streamable_bytes() > 0

    def open_stream(self, geo: Geometry, noise: NoiseSource | None = None) -> EngineStream | TiledStream:
        """A stream for ``geo`` (push LQ model frames, then finish), tiled if the plan says so."""
        plan = self.tile_plan(geo)
        if self.announce:
            self.announce(plan.describe())
        if plan.grid is None:
            state = self.engine.start(geo.model_h, geo.model_w, content=geo.content, noise=noise)
            return EngineStream(self.engine, state)
        return TiledStream(self.engine, plan.grid, geo.content, noise, plan.offload)

    def _push(self, stream, frames: list[torch.Tensor], geo: Geometry) -> HostFrames | None:
        """The frames final after pushing ``frames``, on their way to the host (None: none yet).
        Runs on the engine's own stream, and never across a yield."""
        with running_on(self.first_stream):
            lq = self.convert.prepare(_stacked_on(frames, self.device), geo, self.engine.dtype)
            out = stream.push(lq)
            return HostFrames.copy_of(out, self.convert.to_uint8) if out.shape[0] else None

    def upscale_frames(self, frames: Iterable[np.ndarray], **kwargs) -> list[np.ndarray]:
        return list(self.stream(frames, **kwargs))

    def upscale_file(
        self,
        input: str | Path,
        output: str | Path,
        scale: float | None = None,
        width: int | None = None,
        height: int | None = None,
        progress=None,
        cancel=None,
        **output_settings,
    ):
        """Upscale a video, an image or a folder of images into ``output`` (a video file, an
        image file or a folder), streaming frame by frame, exactly as ``flashvsr upscale`` does.

        ``scale`` defaults to 4 unless ``width``/``height`` are given. ``progress(done, total)``
        is called after every frame; setting ``cancel`` (a ``threading.Event``) stops the job
        at the next frame with :class:`flashvsr.jobs.JobCancelled`, leaving no output behind.
        ``output_settings`` are :class:`flashvsr.jobs.OutputSettings` fields (``codec``, ``crf``,
        ``preset``, ``image_format``, ``quality``, ``fps``, ``overwrite``). Returns a
        :class:`flashvsr.jobs.JobResult`.
        """
        from .jobs import OutputSettings, SizeRequest, plan_job, run_job

        job = plan_job(input, output, SizeRequest(scale, width, height), OutputSettings(**output_settings))
        return run_job(self, job, progress=progress, cancel=cancel)


def engine_config(
    variant: str = "tiny",
    device: str = "cpu",
    dtype: str = "float32",
    color_fix: str = "adain",
    seed: int = 0,
    attention_backend: str = "auto",
    compile: bool = False,
    cuda_graphs: bool = False,
    overlap_decode: bool = False,
    kv_copy_stream: bool | None = None,
    roaming_kv_slots: bool | None = None,
    decoder_channels_last: bool = True,
    tile: str | tuple[int, int] = TILE_AUTO,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    offload_tiles: bool = False,
    memory_limit_gb: float = 0.0,
    decoder_frame_chunk: int = DEFAULT_DECODER_FRAME_CHUNK,
    offload_weights: str = "auto",
    stabilizer: StabilizerConfig = STABILIZER_OFF,
    linears: str = "model",
    **attention,
) -> EngineConfig:
    return EngineConfig(
        compile=compile,
        cuda_graphs=cuda_graphs,
        overlap_decode=overlap_decode,
        kv_copy_stream=kv_copy_stream,
        roaming_kv_slots=roaming_kv_slots,
        decoder_channels_last=decoder_channels_last,
        offload_weights=offload_weights,
        linears=linears,
        decoder_frame_chunk=decoder_frame_chunk,
        tiling=TilingConfig(tile=tile, overlap=tile_overlap, offload=offload_tiles, memory_limit_gb=memory_limit_gb),
        attention=SparseAttentionConfig(**attention),
        variant=variant,
        color_fix=color_fix,
        seed=seed,
        dtype=dtype,
        device=device,
        attention_backend=attention_backend,
        stabilizer=stabilizer,
    )


def model_engine_config(models: FlashVSRModels, stabilize: str | StabilizerConfig = "auto", **settings) -> EngineConfig:
    """:func:`engine_config` for ``models``, with ``stabilize`` ("auto", "on", "off") resolved
    against what the model folder recommends."""
    return engine_config(stabilizer=resolve_stabilizer(stabilize, models.config.stabilizer), **settings)


def _stacked_on(frames: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Frames stacked on ``device``, stacked straight into pinned memory for a GPU (see flashvsr.transfer)."""
    if device.type != "cuda":
        return torch.stack(frames).to(device)
    staged = torch.empty((len(frames), *frames[0].shape), dtype=torch.uint8, pin_memory=True)
    return to_device(torch.stack(frames, out=staged), device)


def _as_u8_tensor(frame) -> torch.Tensor:
    if not torch.is_tensor(frame):
        array = np.asarray(frame)
        # torch warns on read-only arrays (decoded or memory-mapped frames); it never writes to them here
        t = torch.from_numpy(array if array.flags.writeable else array.copy())
    else:
        t = frame
    if t.ndim == 2:
        t = t[..., None].expand(-1, -1, 3)
    if t.ndim != 3 or t.shape[-1] not in (3, 4) or t.dtype != torch.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 arrays, got {tuple(t.shape)} {t.dtype}")
    return t[..., :3].contiguous()


@dataclass
class HostFrames:
    """Output frames being copied to (pinned) host memory."""

    host: torch.Tensor  # (T, h, w, 3) uint8
    copied: torch.cuda.Event | None = None  # done once this event has passed; None: written by the CPU already

    @staticmethod
    def copy_of(frames: torch.Tensor, as_uint8: Callable[[torch.Tensor], torch.Tensor] = to_uint8) -> "HostFrames":
        """Start copying (T, 3, h, w) frames in [-1, 1] to host memory, without waiting on a GPU."""
        u8 = as_uint8(frames)
        if u8.device.type != "cuda":
            return HostFrames(u8.cpu())
        return HostFrames(to_pinned_host(u8), torch.cuda.current_stream(u8.device).record_event())

    def frames(self) -> list[np.ndarray]:
        if self.copied is not None:
            self.copied.synchronize()
        return list(self.host.numpy())


CALLS_AHEAD = 2  # DiT calls queued after a push's frames before the host waits for them


class HandOver:
    """Pushes' output frames on their way to the host, handed out in order once :data:`CALLS_AHEAD`
    later pushes have made frames (each queued a DiT call). With one, the host waited for a call's
    decoder when the GPU had little more queued, and the GPU idled while the host launched the next call."""

    def __init__(self, calls_ahead: int = CALLS_AHEAD):
        self.calls_ahead = calls_ahead
        self.copying: deque[HostFrames] = deque()

    def add(self, new: HostFrames | None) -> list[np.ndarray]:
        """The frames to hand out now that a push returned ``new`` (None: it made no frames)."""
        if new is None:
            return []
        self.copying.append(new)
        return self.copying.popleft().frames() if len(self.copying) > self.calls_ahead else []

    def rest(self) -> Iterator[np.ndarray]:
        while self.copying:
            yield from self.copying.popleft().frames()


__all__ = [
    "Upscaler", "Geometry", "FrameConversions", "plan_geometry", "prepare_frames", "to_uint8", "engine_config",
    "model_engine_config", "PIXEL_MULTIPLE",
]  # fmt: skip
