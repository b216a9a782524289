"""Upscaling jobs: one input (video, image, image folder) → one output, streamed frame by frame.

    plan_jobs(inputs, output, size, settings)   check everything, decide names and sizes (no model needed)
    run_job(upscaler, job, progress, cancel)     decode ─► Upscaler.stream ─► encode (on a thread of its
                                                 own, io/background.py), into a partial file that is
                                                 renamed to the output on success

Planning is separate so that a command line or a web UI can refuse bad inputs before loading a
model, and show what will happen. Running reports ``progress(frames_done, frames_total)`` after
every frame and stops cleanly at the next frame once ``cancel`` (a ``threading.Event``) is set.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch

from .engine.schedule import FRAMES_PER_CALL
from .io import IMAGE, IMAGE_SEQUENCE, VIDEO, MediaError, MediaInfo, TimedFrame, open_reader, probe
from .io.atomic import AtomicOutput
from .io.background import BackgroundWriter, read_ahead
from .io.images import (
    DEFAULT_IMAGE_FORMAT,
    DEFAULT_QUALITY,
    DEFAULT_SEQUENCE_FPS,
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    ImageOutputSpec,
    ImageSequenceWriter,
    SingleImageWriter,
    list_images,
    list_videos,
)
from .io.media import plural
from .io.video import (
    DEFAULT_CODEC,
    MAX_CRF,
    VIDEO_CODECS,
    VIDEO_CONTAINERS,
    X264_PRESETS,
    VideoOutputSpec,
    VideoWriter,
    check_codec_fits,
)
from .pipeline import Geometry, plan_geometry

DEFAULT_SCALE = 4.0
MAX_QUALITY = 100
FRAME_NAME_DIGITS = 6  # frames of a video written as images: 000000.png, 000001.png…

ProgressCallback = Callable[[int, int], None]  # (frames_done, frames_total)


class JobCancelled(Exception):
    """The job's cancel event was set; its partial output has been deleted."""


# --------------------------------------------------------------------------------------------
# What the user asked for


@dataclass(frozen=True)
class SizeRequest:
    """The output size: a scale factor, or a target width and/or height (aspect kept)."""

    scale: float | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self):
        if self.scale is not None and (self.width or self.height):
            raise ValueError("give either a scale or a target width/height, not both")
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive number of pixels, got {value}")

    @property
    def effective_scale(self) -> float | None:
        return None if (self.width or self.height) else (self.scale if self.scale is not None else DEFAULT_SCALE)

    def geometry(self, info: MediaInfo, even: bool) -> Geometry:
        try:
            return plan_geometry(info.height, info.width, self.effective_scale, self.width, self.height, even)
        except ValueError as e:
            raise ValueError(f"{info.path.name}: {e}") from None


@dataclass(frozen=True)
class OutputSettings:
    """How outputs are written (one instance per run, shared by every job of a batch)."""

    codec: str = DEFAULT_CODEC
    crf: int | None = None
    preset: str | None = None
    image_format: str | None = None  # None: PNG for sequences, the input's format for images
    quality: int = DEFAULT_QUALITY
    fps: Fraction = DEFAULT_SEQUENCE_FPS  # frame rate of image inputs written as video
    overwrite: bool = False

    def __post_init__(self):
        codec = VIDEO_CODECS.get(self.codec)
        if codec is None:
            raise ValueError(f"unknown codec {self.codec!r}; choose one of {', '.join(VIDEO_CODECS)}")
        if self.crf is not None and codec.default_crf is None:
            raise ValueError(f"--crf does not apply to {self.codec} (it has no quality setting)")
        if self.crf is not None and not 0 <= self.crf <= MAX_CRF:
            raise ValueError(f"crf must be between 0 and {MAX_CRF}, got {self.crf}")
        if self.preset is not None and (not codec.has_preset or self.preset not in X264_PRESETS):
            raise ValueError(f"preset {self.preset!r} does not apply to {self.codec}")
        if self.image_format is not None and self.image_format not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format {self.image_format!r}; choose one of {', '.join(IMAGE_FORMATS)}")
        if not 1 <= self.quality <= MAX_QUALITY:
            raise ValueError(f"quality must be between 1 and {MAX_QUALITY}, got {self.quality}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    @property
    def video_codec(self):
        return VIDEO_CODECS[self.codec]


@dataclass(frozen=True)
class Job:
    """One planned job: everything is checked and decided, nothing is written yet."""

    input: MediaInfo
    output: Path
    output_kind: str  # VIDEO, IMAGE_SEQUENCE or IMAGE
    geometry: Geometry
    settings: OutputSettings

    def describe(self) -> str:
        g = self.geometry
        return f"{self.input.path} → {self.output} ({self.input.width}×{self.input.height} → {g.out_w}×{g.out_h})"


@dataclass(frozen=True)
class JobResult:
    """What a finished job did; ``summary()`` is the line the command prints."""

    input: Path
    output: Path
    frames: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    seconds: float
    peak_host_bytes: int
    peak_device_bytes: int | None
    audio_streams: int = 0
    warnings: tuple[str, ...] = ()  # the output is complete, but the input was not what it claimed

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        (iw, ih), (ow, oh) = self.in_size, self.out_size
        memory = f"peak memory {_gib(self.peak_host_bytes)} host"
        if self.peak_device_bytes is not None:
            memory += f", {_gib(self.peak_device_bytes)} GPU"
        text = (
            f"{self.input.name} → {self.output}: {plural(self.frames, 'frame')}, {iw}×{ih} → {ow}×{oh}, "
            f"{self.seconds:.1f} s ({self.fps:.1f} fps), {memory}"
        )
        if self.audio_streams:
            text += f", {plural(self.audio_streams, 'audio stream')}"
        return text


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


# --------------------------------------------------------------------------------------------
# Planning


def plan_jobs(
    inputs: Iterable[str | Path],
    output: str | Path,
    size: SizeRequest = SizeRequest(),
    settings: OutputSettings = OutputSettings(),
) -> list[Job]:
    """Check every input and decide every output before anything runs.

    One input → ``output`` is a video file (.mp4/.mkv/.mov/.m4v), an image file (one-frame
    inputs) or otherwise a folder of images. Several inputs, or a folder of videos → ``output``
    is a folder that gets one output per input, named after it.
    """
    raw_inputs = [Path(p) for p in inputs]
    if not raw_inputs:
        raise ValueError("no input given")
    sources, batch = _expand_inputs(raw_inputs, settings)
    trailing_slash = str(output).endswith(("/", os.sep))  # before Path() drops it: "out.v2/" is a folder
    output = Path(output)
    if batch:
        _check_batch_folder(output)
        jobs = [_plan(info, *_batch_output(info, output, settings), size, settings) for info in sources]
    else:
        kind = _output_kind(sources[0], output, trailing_slash=trailing_slash)
        jobs = [_plan(sources[0], output, kind, size, settings)]
    _check_distinct(jobs, [s.path for s in sources])
    return jobs


def plan_job(input: str | Path, output: str | Path, size: SizeRequest, settings: OutputSettings) -> Job:
    """A single job (the input must not be a folder of videos)."""
    jobs = plan_jobs([input], output, size, settings)
    if len(jobs) != 1:
        raise ValueError(f"{input} is a folder of videos: upscale it as a batch into an output folder")
    return jobs[0]


def _expand_inputs(paths: list[Path], settings: OutputSettings) -> tuple[list[MediaInfo], bool]:
    """(media of every input, whether this is a batch): folders of videos become their videos."""
    sources, batch = [], len(paths) > 1
    for path in paths:
        if not path.exists():
            raise MediaError(f"{path}: no such file or folder")
        if path.is_dir() and not list_images(path):
            videos = list_videos(path)
            if not videos:
                raise MediaError(f"{path}: no images or videos in this folder")
            sources.extend(probe(v) for v in videos)
            batch = True
        else:
            if path.is_dir() and list_videos(path):
                raise MediaError(f"{path}: holds both images and videos; pass the videos as separate inputs")
            sources.append(probe(path, fps=settings.fps))
    return sources, batch


def _batch_output(info: MediaInfo, folder: Path, settings: OutputSettings) -> tuple[Path, str]:
    """(path, kind) of one batch output: the input's name in ``folder``; a video keeps its
    container when the codec fits in it, an image its format unless --format is given."""
    if info.kind == VIDEO:
        suffix = info.path.suffix.lower()
        try:
            check_codec_fits(settings.video_codec, folder / f"x{suffix}")
        except MediaError:
            suffix = settings.video_codec.extension
        return folder / f"{info.path.stem}{suffix}", VIDEO
    if info.kind == IMAGE:
        suffix = IMAGE_FORMATS[settings.image_format] if settings.image_format else info.path.suffix.lower()
        return folder / f"{info.path.stem}{suffix}", IMAGE
    return folder / info.path.name, IMAGE_SEQUENCE


def _output_kind(info: MediaInfo, output: Path, trailing_slash: bool) -> str:
    """What a single input's output is, from its name: a video, an image, or else a folder."""
    suffix = output.suffix.lower()
    if trailing_slash or output.is_dir() or not suffix:
        return IMAGE_SEQUENCE
    if suffix in VIDEO_CONTAINERS:
        return VIDEO
    if suffix in IMAGE_SUFFIXES:
        if info.frames != 1:
            raise MediaError(
                f"{output}: an image holds one frame but {info.path.name} has {info.frames}; "
                f"write a video (.mp4, .mkv, .mov) or a folder instead"
            )
        return IMAGE
    raise MediaError(
        f"{output}: unknown output extension {output.suffix!r}; use .mp4, .mkv, .mov or .m4v for video, "
        f"{', '.join(sorted(set(IMAGE_SUFFIXES)))} for an image, or a folder name for an image sequence"
    )


def _plan(info: MediaInfo, output: Path, kind: str, size: SizeRequest, settings: OutputSettings) -> Job:
    if kind == VIDEO:
        check_codec_fits(settings.video_codec, output)
    _check_output_path(info, output, kind, settings.overwrite)
    even = kind == VIDEO and settings.video_codec.needs_even_size
    return Job(info, output, kind, size.geometry(info, even), settings)


def _check_output_path(info: MediaInfo, output: Path, kind: str, overwrite: bool) -> None:
    if _same_path(output, info.path):
        raise MediaError(f"{output}: is the input itself; choose another output name")
    if kind == IMAGE_SEQUENCE:
        if output.exists() and not output.is_dir():
            raise MediaError(f"{output}: exists and is not a folder")
        if output.is_dir() and any(output.iterdir()) and not overwrite:
            raise MediaError(f"{output}: folder is not empty; pass --overwrite to write into it")
        return
    if output.is_dir():
        raise MediaError(f"{output}: is a folder; give a file name")
    if output.exists() and not overwrite:
        raise MediaError(f"{output}: already exists; pass --overwrite to replace it")


def _check_batch_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise MediaError(f"{folder}: several inputs need an output folder, but this is a file")


def _check_distinct(jobs: list[Job], inputs: list[Path]) -> None:
    seen: dict[Path, Path] = {}
    for job in jobs:
        key = job.output.resolve()
        if key in seen:
            raise MediaError(f"{job.output}: both {seen[key]} and {job.input.path} would be written here")
        seen[key] = job.input.path
        for source in inputs:
            if _same_path(job.output, source):
                raise MediaError(f"{job.output}: would replace the input {source}; choose another output folder")


def _same_path(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


# --------------------------------------------------------------------------------------------
# Running


def run_job(
    upscaler,
    job: Job,
    progress: ProgressCallback | None = None,
    cancel=None,
) -> JobResult:
    """Upscale one planned job. ``cancel`` is anything with ``is_set()`` (a threading.Event)."""
    reader = open_reader(job.input)
    total = job.input.frames
    started = time.monotonic()
    _reset_device_peak(upscaler)
    done = 0
    output = AtomicOutput(job.output, job.settings.overwrite, folder=job.output_kind == IMAGE_SEQUENCE)
    with (
        output as partial,
        _opened(BackgroundWriter(lambda: _writer(job, reader, partial))) as writer,  # opened on the encoder's thread
        contextlib.closing(read_ahead(reader.frames())) as frames,  # decoded on a thread of its own
    ):
        for frame in upscale_timed(upscaler, frames, job.geometry, cancel, label=str(job.input.path)):
            writer.write(frame)
            done += 1
            if progress:
                progress(done, max(total, done))
            _check_cancel(cancel)
    if progress and done < total:
        progress(done, done)  # the container promised more frames than it had
    return JobResult(
        input=job.input.path,
        output=job.output,
        frames=done,
        in_size=job.input.size,
        out_size=(job.geometry.out_w, job.geometry.out_h),
        seconds=time.monotonic() - started,
        peak_host_bytes=peak_host_memory(),
        peak_device_bytes=_device_peak(upscaler),
        audio_streams=len(job.input.audio) if job.output_kind == VIDEO else 0,
        warnings=_input_warnings(job, done, getattr(reader, "skipped_packets", 0)),
    )


def _input_warnings(job: Job, decoded: int, skipped_packets: int) -> tuple[str, ...]:
    """What the user should know about an input that decoded differently from its header."""
    name, warnings = job.input.path.name, []
    if skipped_packets:
        warnings.append(f"{name}: {plural(skipped_packets, 'damaged video packet')} could not be decoded and were skipped")
    if decoded < job.input.frames:
        warnings.append(
            f"{name}: the file declares {job.input.frames} frames but {decoded} could be decoded "
            f"(edited files may trim some; otherwise the file is damaged)"
        )
    return tuple(warnings)


def upscale_timed(
    upscaler, frames: Iterator[TimedFrame], geometry: Geometry, cancel=None, label: str = "input"
) -> Iterator[TimedFrame]:
    """Upscale timed frames one by one, giving each output frame its input's timestamp."""
    timings: deque[tuple[int, int | None]] = deque()  # frames inside the engine; bounded by its latency
    counts = {"in": 0, "out": 0}

    def images():
        for frame in frames:
            _check_cancel(cancel)
            timings.append((frame.pts, frame.duration))
            counts["in"] += 1
            yield frame.image

    try:
        # a steady DiT call's worth per push: fewer, larger host-to-GPU copies and launches; latency does not matter here
        for image in upscaler.stream(images(), width=geometry.out_w, height=geometry.out_h, batch=FRAMES_PER_CALL):
            pts, duration = timings.popleft()
            counts["out"] += 1
            yield TimedFrame(image, pts, duration)
    except ValueError as e:
        if counts["in"] == 0:
            raise MediaError(f"{label}: no frame could be decoded") from None
        raise MediaError(f"{label}: frame {counts['in']}: {e}") from None
    if counts["out"] != counts["in"]:
        raise RuntimeError(f"the engine returned {counts['out']} frames for {counts['in']}")


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise JobCancelled("cancelled")


@contextlib.contextmanager
def _opened(writer):
    """Finish the writer on success; on any failure release it (the partial file is deleted)."""
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()


def _writer(job: Job, reader, partial: Path):
    settings = job.settings
    if job.output_kind == VIDEO:
        return VideoWriter(partial, _video_spec(job))
    image_spec = ImageOutputSpec(_image_suffix(job), settings.quality, getattr(reader, "icc_profile", None))
    if job.output_kind == IMAGE:
        return SingleImageWriter(partial, image_spec)
    return ImageSequenceWriter(partial, _frame_stems(job, reader), image_spec)


def _video_spec(job: Job) -> VideoOutputSpec:
    info, settings = job.input, job.settings
    is_video = info.kind == VIDEO
    rate = info.fps if is_video and info.fps else settings.fps
    return VideoOutputSpec(
        codec=settings.video_codec,
        width=job.geometry.out_w,
        height=job.geometry.out_h,
        rate=rate,
        time_base=info.time_base if is_video else 1 / settings.fps,
        color=info.color,
        crf=settings.crf,
        preset=settings.preset,
        pixel_aspect=info.pixel_aspect,
        audio_source=info.path if is_video and info.audio else None,
        metadata=info.tags,
    )


def _image_suffix(job: Job) -> str:
    if job.output_kind == IMAGE:
        return job.output.suffix.lower()
    return IMAGE_FORMATS[job.settings.image_format or DEFAULT_IMAGE_FORMAT]


def _frame_stems(job: Job, reader) -> Iterator[str]:
    """Names of the output images: the input's names for image folders, frame numbers otherwise."""
    if job.input.kind == IMAGE_SEQUENCE:
        return (p.stem for p in reader.paths)
    return (f"{i:0{FRAME_NAME_DIGITS}d}" for i in itertools.count())


# --------------------------------------------------------------------------------------------
# Memory


def peak_host_memory() -> int:
    """Peak resident memory of this process so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _reset_device_peak(upscaler) -> None:
    if upscaler.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(upscaler.device)


def _device_peak(upscaler) -> int | None:
    if upscaler.device.type == "cuda":
        return torch.cuda.max_memory_allocated(upscaler.device)
    return None
