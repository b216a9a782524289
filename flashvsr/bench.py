"""``flashvsr bench``: time the whole streaming pipeline on a GPU.

Official-size models with random weights drawn by the canonical rule (speed does not depend
on the values, but realistic magnitudes give realistic masks), a synthetic textured LR video,
a warm-up pass (compilation), then timed passes with CUDA events: frames per second, time of
each stage per 8 frames, and peak device memory. With ``file_io`` each pass is a whole
``flashvsr upscale`` job instead: an H.264 file with audio decoded, upscaled and encoded to
H.264 with the CLI's defaults (the clip is written once, before the passes).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .attention.backends import backend_name
from .config import DEFAULT_DECODER_FRAME_CHUNK, DEFAULT_TILE_OVERLAP, STABILIZER_OFF, STABILIZER_ON, TILE_AUTO, official_config
from .engine.overlap import running_on
from .engine.timing import STAGES, CudaClock, WallClock
from .models import FlashVSRModels
from .pipeline import Upscaler, engine_config, plan_geometry

FRAMES_PER_REPORT = 8  # stage times are reported per 8 frames, one steady-state DiT call
BENCH_CLIP_FPS = 30  # frame rate of the input file that file_io jobs read


@dataclass(frozen=True)
class BenchConfig:
    height: int = 768
    width: int = 1408
    frames: int = 101
    variant: str = "tiny"
    dtype: str = "bfloat16"
    device: str = "cuda"
    sparse_ratio: float = 2.0
    local_range: int = 11
    kv_ratio: float = 3.0
    kv_cache: str = "model"
    linears: str = "model"  # "fp8": the DiT's linears on FP8 tensor cores (lossy)
    layers: int = 30
    warmup: int = 1
    repeats: int = 2
    batch: int = 8
    scale: int = 4
    seed: int = 0
    attention_backend: str = "auto"
    compile: bool = False
    cuda_graphs: bool = False
    decoder_channels_last: bool = True
    tile: str | tuple[int, int] = TILE_AUTO
    tile_overlap: int = DEFAULT_TILE_OVERLAP
    offload_tiles: bool = False
    memory_limit_gb: float = 0.0
    decoder_frame_chunk: int = DEFAULT_DECODER_FRAME_CHUNK
    offload_weights: str = "auto"
    overlap_decode: bool = False
    kv_copy_stream: bool | None = None  # None: with overlap_decode
    roaming_kv_slots: bool | None = None  # None: with overlap_decode
    file_io: bool = False  # time whole file jobs: decode the input video, upscale, encode the output
    stabilize: bool = False  # the stabilizer on (--stabilize on's settings), as the bundled model runs


@dataclass
class BenchResult:
    config: dict
    device_name: str
    fps: float
    seconds: float
    stage_ms_per_8_frames: dict[str, float] = field(default_factory=dict)
    peak_memory_gb: float = 0.0
    peak_reserved_gb: float = 0.0  # what the caching allocator held from the driver at most (what runs out first)
    runs_seconds: list[float] = field(default_factory=list)
    host_ms_per_8_frames: float = 0.0  # the host's time to queue the work, waits included: near the GPU's, host-bound
    host_cpu_ms_per_8_frames: float = 0.0  # of which the launching thread computed (the rest it waited: GIL, queues, GPU)
    host_stage_ms_per_8_frames: dict[str, float] = field(default_factory=dict)  # the host's time in each stage
    tiling: str = ""
    attention: str = ""  # the block-sparse kernel "auto" resolved to

    def table(self) -> str:
        c = self.config
        lines = [
            f"{self.device_name}: {c['frames']} frames at {c['width']}×{c['height']} ({c['variant']}, {c['dtype']}, "
            f"attention {self.attention}{', file jobs: decode + upscale + encode' if c['file_io'] else ''})",
            f"  {self.fps:.2f} FPS  ({self.seconds:.3f} s, runs {', '.join(f'{s:.3f}' for s in self.runs_seconds)})",
            f"  peak device memory {self.peak_memory_gb:.2f} GB (reserved {self.peak_reserved_gb:.2f}); {self.tiling}",
            f"  the host queued 8 frames in {self.host_ms_per_8_frames:.1f} ms, computing for {self.host_cpu_ms_per_8_frames:.1f} "
            f"(the whole pass: {8e3 / self.fps:.1f} ms)",
            "  ms per 8 frames: " + ", ".join(f"{k} {v:.1f}" for k, v in self.stage_ms_per_8_frames.items()),
            "  the host's ms per 8 frames: " + ", ".join(f"{k} {v:.1f}" for k, v in self.host_stage_ms_per_8_frames.items()),
        ]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def fill_random(module: nn.Module, seed: int, device: torch.device) -> nn.Module:
    """Canonical-rule magnitudes (norm weights ≈ 1, fan-in scaled matrices, small vectors),
    drawn with torch's generator on ``device`` so official sizes fill in seconds."""
    state = {}
    for key, ref in module.state_dict().items():
        gen = torch.Generator(device=device).manual_seed((zlib.crc32(key.encode()) + seed) % 2**32)
        z = torch.randn(ref.shape, generator=gen, device=device)
        last = key.rsplit(".", 1)[-1]
        if last == "gamma" or (last == "weight" and "norm" in key):
            state[key] = 1 + 0.1 * z
        elif z.ndim >= 2:
            state[key] = z / math.sqrt(math.prod(ref.shape[1:]))
        else:
            state[key] = 0.02 * z
    module.load_state_dict(state, strict=True, assign=True)
    return module


def random_official_models(layers: int, variant: str, device, seed: int = 0) -> FlashVSRModels:
    models = FlashVSRModels.build(official_config("v1.1", layers), decoders=(variant,), device="meta")
    for module in models.modules().values():
        fill_random(module, seed, torch.device(device))
    gen = torch.Generator(device=device).manual_seed(seed)
    cfg = models.config.dit
    models.context = torch.randn(1, cfg.text_len, cfg.text_dim, generator=gen, device=device)
    return models


def random_upscaler(layers: int = 30, device: str = "cuda", **engine_options) -> Upscaler:
    """An Upscaler over official-size random Tiny models in bf16 with the reference's attention
    settings: what the device scripts in benchmarks/ time and profile."""
    models = random_official_models(layers, "tiny", device)
    return Upscaler(models, engine_config("tiny", device, "bfloat16", **engine_options))


def synthetic_lr_video(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(T, H, W, 3) uint8: a textured scene panning and zooming slowly, with sensor-like noise."""
    gen = torch.Generator().manual_seed(seed)
    big_h, big_w = height * 2, width * 2
    texture = torch.rand(1, 3, big_h // 8, big_w // 8, generator=gen)
    texture = torch.nn.functional.interpolate(texture, size=(big_h, big_w), mode="bicubic", align_corners=False)
    detail = torch.rand(1, 3, big_h, big_w, generator=gen) * 0.15
    scene = (texture * 0.85 + detail).clamp(0, 1)
    out = torch.empty(frames, height, width, 3, dtype=torch.uint8)
    for t in range(frames):
        y, x = int(t * 1.5) % (big_h - height), int(t * 2.5) % (big_w - width)
        crop = scene[0, :, y : y + height, x : x + width]
        noise = torch.randn(crop.shape, generator=gen) * 0.01
        out[t] = ((crop + noise).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    return out


def run_bench(cfg: BenchConfig) -> BenchResult:
    device = torch.device(cfg.device)
    cuda = device.type == "cuda"
    models = random_official_models(cfg.layers, cfg.variant, device, cfg.seed)
    settings = dict(sparse_ratio=cfg.sparse_ratio, local_range=cfg.local_range, kv_ratio=cfg.kv_ratio, kv_cache=cfg.kv_cache)
    upscaler = Upscaler(
        models,
        engine_config(cfg.variant, str(device), cfg.dtype, attention_backend=cfg.attention_backend,
                      compile=cfg.compile, cuda_graphs=cfg.cuda_graphs, overlap_decode=cfg.overlap_decode,
                      kv_copy_stream=cfg.kv_copy_stream, roaming_kv_slots=cfg.roaming_kv_slots,
                      decoder_channels_last=cfg.decoder_channels_last, tile=cfg.tile, tile_overlap=cfg.tile_overlap,
                      offload_tiles=cfg.offload_tiles, memory_limit_gb=cfg.memory_limit_gb,
                      decoder_frame_chunk=cfg.decoder_frame_chunk, offload_weights=cfg.offload_weights,
                      stabilizer=STABILIZER_ON if cfg.stabilize else STABILIZER_OFF, linears=cfg.linears, **settings),
    )
    engine = upscaler.engine
    lr_h, lr_w = cfg.height // cfg.scale, cfg.width // cfg.scale
    lr = synthetic_lr_video(cfg.frames, lr_h, lr_w, cfg.seed)
    lr = lr.pin_memory() if cuda else lr
    geo = plan_geometry(lr_h, lr_w, width=cfg.width, height=cfg.height)
    tiling = upscaler.tile_plan(geo).describe()
    with tempfile.TemporaryDirectory(prefix="flashvsr-bench-") as folder:
        files = _write_input_clip(Path(folder), lr) if cfg.file_io else None
        sink = None if files else torch.empty(cfg.frames, geo.out_h, geo.out_w, 3, dtype=torch.uint8, pin_memory=cuda)
        runs, host_seconds, stage_totals, host_stage_totals = _timed_passes(cfg, upscaler, lr, geo, files, sink)
    middle = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    seconds = middle(runs)
    per8 = cfg.frames / FRAMES_PER_REPORT
    stages = {k: stage_totals[k] / per8 for k in STAGES if k in stage_totals}
    host_stages = {k: host_stage_totals[k] / per8 for k in STAGES if k in host_stage_totals}
    return BenchResult(
        config=asdict(cfg),
        device_name=torch.cuda.get_device_name(device) if cuda else "cpu",
        fps=cfg.frames / seconds,
        seconds=seconds,
        stage_ms_per_8_frames=stages,
        host_stage_ms_per_8_frames=host_stages,
        peak_memory_gb=torch.cuda.max_memory_allocated(device) / 1e9 if cuda else 0.0,
        peak_reserved_gb=torch.cuda.max_memory_reserved(device) / 1e9 if cuda else 0.0,
        runs_seconds=runs,
        host_ms_per_8_frames=1e3 * middle([wall for wall, _ in host_seconds]) / per8,
        host_cpu_ms_per_8_frames=1e3 * middle([cpu for _, cpu in host_seconds]) / per8,
        tiling=tiling,
        attention=backend_name(engine.kernel),
    )


def _timed_passes(cfg: BenchConfig, upscaler: Upscaler, lr, geo, files, sink):
    """Warm-up then timed passes: each pass's seconds on the GPU, the host's (seconds until all its
    work was queued, seconds of it the thread computed), and each stage's mean milliseconds."""
    engine, cuda = upscaler.engine, upscaler.device.type == "cuda"
    runs, host_runs, stage_totals, host_stage_totals = [], [], {}, {}
    for rep in range(cfg.warmup + cfg.repeats):
        clock = CudaClock() if cuda else WallClock()
        engine.clock = clock
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with clock.section("total"):
            queued, computed = time.perf_counter(), time.thread_time()
            if files:
                upscaler.upscale_file(*files, width=cfg.width, height=cfg.height, overwrite=True)
            else:
                _stream_once(upscaler, lr, geo, sink, cfg.batch, clock)
            queued, computed = time.perf_counter() - queued, time.thread_time() - computed
        totals = clock.totals_ms()
        if rep >= cfg.warmup:
            runs.append(totals.pop("total") / 1e3)
            host_runs.append((queued, computed))
            for k, v in totals.items():
                stage_totals[k] = stage_totals.get(k, 0.0) + v / cfg.repeats
            for k, v in getattr(clock, "host_totals_ms", dict)().items():
                host_stage_totals[k] = host_stage_totals.get(k, 0.0) + v / cfg.repeats
    return runs, host_runs, stage_totals, host_stage_totals


def _write_input_clip(folder: Path, lr: torch.Tensor) -> tuple[Path, Path]:
    """The bench's LR clip as an H.264 file with an AAC tone (what a job reads), and where the job writes."""
    from .demo import write_clip  # PyAV: only file jobs need it

    source = write_clip(folder / "input.mp4", lr.numpy(), BENCH_CLIP_FPS, with_tone=True)
    return source, folder / "output.mp4"


def _stream_once(upscaler: Upscaler, lr, geo, sink, batch, clock) -> None:
    engine = upscaler.engine
    done = 0
    with torch.no_grad(), running_on(upscaler.first_stream):  # as Upscaler.stream runs the engine
        stream = upscaler.open_stream(geo)
        for i in range(0, lr.shape[0], batch):
            with clock.section("prepare"):
                lq = upscaler.convert.prepare(lr[i : i + batch].to(engine.device, non_blocking=True), geo, engine.dtype)
            done = _drain(stream.push(lq), sink, done, clock, upscaler.convert.to_uint8)
        _drain(stream.finish(), sink, done, clock, upscaler.convert.to_uint8)


def _drain(frames: torch.Tensor, sink: torch.Tensor, done: int, clock, as_uint8) -> int:
    if frames.shape[0]:
        with clock.section("output"):
            sink[done : done + frames.shape[0]].copy_(as_uint8(frames), non_blocking=True)
    return done + frames.shape[0]
