"""What a client sends to create a job, checked and turned into the typed settings of
flashvsr.jobs (SizeRequest, OutputSettings) and of the model (ModelSettings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..io import IMAGE, MediaError
from ..io.images import DEFAULT_QUALITY, IMAGE_FORMATS
from ..io.video import MAX_CRF, VIDEO_CODECS
from ..jobs import MAX_QUALITY, Job, OutputSettings, SizeRequest, plan_job
from ..weights.loading import WeightsError
from .models import ModelFolder, ModelSettings, folder_problem, no_model_message
from .uploads import Upload

AUTO_FORMAT = "auto"  # H.264 MP4 for videos, the input's own format for images
AUTO_RELEASE = "auto"
MAX_SEED = 2**32 - 1
_MODEL_DEFAULTS = ModelSettings(Path())  # the reference's settings (the folder is chosen per request)


class JobRequest(BaseModel):
    """The body of POST /api/jobs and POST /api/plan. Leave out what you do not care about."""

    model_config = ConfigDict(extra="forbid")

    upload_id: str
    weights: str | None = Field(None, description="model folder on the server; default: the first available one")
    release: Literal["auto", "v1", "v1.1"] = AUTO_RELEASE
    variant: Literal["tiny", "full"] = _MODEL_DEFAULTS.variant
    sparse_ratio: float = Field(_MODEL_DEFAULTS.sparse_ratio, gt=0)
    local_range: int = Field(_MODEL_DEFAULTS.local_range, gt=0)
    color_fix: Literal["adain", "wavelet", "none"] = _MODEL_DEFAULTS.color_fix
    seed: int = Field(_MODEL_DEFAULTS.seed, ge=0, le=MAX_SEED)
    stabilize: Literal["auto", "on", "off"] = Field(
        _MODEL_DEFAULTS.stabilize, description="steady still regions: auto follows the model folder (on for the bundled model)"
    )
    scale: float | None = Field(None, ge=1, description="upscaling factor; default 4 unless width/height are given")
    width: int | None = Field(None, gt=0)
    height: int | None = Field(None, gt=0)
    format: str = Field(AUTO_FORMAT, description="auto, a video codec (h264, h265, prores, ffv1) or an image format")
    crf: int | None = Field(None, ge=0, le=MAX_CRF)
    quality: int = Field(DEFAULT_QUALITY, ge=1, le=MAX_QUALITY)


def output_formats() -> dict[str, list[str]]:
    return {"video": list(VIDEO_CODECS), "image": [f for f in IMAGE_FORMATS if f != "jpeg"]}


def model_settings(request: JobRequest, folders: list[ModelFolder]) -> ModelSettings:
    return ModelSettings(
        weights=_model_folder(request.weights, folders),
        release=None if request.release == AUTO_RELEASE else request.release,
        variant=request.variant,
        sparse_ratio=request.sparse_ratio,
        local_range=request.local_range,
        color_fix=request.color_fix,
        seed=request.seed,
        stabilize=request.stabilize,
    )


def _model_folder(asked: str | None, folders: list[ModelFolder]) -> Path:
    if asked:
        path = Path(asked).expanduser()
        problem = folder_problem(path)
        if problem:
            raise WeightsError(problem)
        return path
    available = [f.path for f in folders if f.available]
    if not available:
        raise WeightsError(no_model_message())
    return available[0]


def plan_request(request: JobRequest, upload: Upload, folder: Path) -> Job:
    """The flashvsr.jobs plan of ``request``, writing into ``folder`` (which need not exist yet)."""
    size = SizeRequest(request.scale, request.width, request.height)
    settings, suffix = _output_settings(request, upload)
    name = f"{Path(upload.name).stem}_{_size_tag(size)}"
    # a folder name must not look like it has an extension (jobs.py reads kinds from suffixes)
    output = folder / (f"{name}{suffix}" if suffix.startswith(".") else f"{name}{suffix}".replace(".", "_"))
    return plan_job(upload.path, output, size, settings)


def _output_settings(request: JobRequest, upload: Upload) -> tuple[OutputSettings, str]:
    """(settings, output suffix); an empty suffix makes an image-sequence folder."""
    fmt = request.format.lower()
    if fmt == AUTO_FORMAT:
        fmt = "h264" if upload.info.kind != IMAGE else AUTO_FORMAT
    if fmt in VIDEO_CODECS:
        codec = VIDEO_CODECS[fmt]
        crf = request.crf if codec.default_crf is not None else None
        return OutputSettings(codec=fmt, crf=crf), codec.extension
    if fmt == AUTO_FORMAT:  # an image keeps its own format
        return OutputSettings(quality=request.quality), upload.path.suffix.lower()
    if fmt not in IMAGE_FORMATS:
        raise MediaError(f"unknown output format {request.format!r}; choose {AUTO_FORMAT}, "
                         f"{', '.join(VIDEO_CODECS)} or {', '.join(IMAGE_FORMATS)}")  # fmt: skip
    settings = OutputSettings(image_format=fmt, quality=request.quality)
    if upload.info.kind == IMAGE:
        return settings, IMAGE_FORMATS[fmt]
    return settings, f"_{fmt}"  # many frames: a folder of images


def _size_tag(size: SizeRequest) -> str:
    if size.width and size.height:
        return f"{size.width}x{size.height}"
    if size.width:
        return f"w{size.width}"
    if size.height:
        return f"h{size.height}"
    return f"x{size.effective_scale:g}"


def describe_plan(job: Job) -> dict:
    g = job.geometry
    return {
        "output_name": job.output.name,
        "output_kind": job.output_kind,
        "width": g.out_w,
        "height": g.out_h,
        "frames": job.input.frames,
        "scale": g.out_w / g.in_w,
    }
