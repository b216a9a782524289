"""Which model a job wants, and the one loaded model the server keeps between jobs.

Loading weights is the slow part (seconds to minutes for the official release); building an
engine on loaded weights is instant. So the cache reloads only when the folder, release or
decoder variant change, and rebuilds just the engine when sparse ratio, local range, colour
fix or seed change.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import EngineConfig, SparseAttentionConfig
from ..pipeline import Upscaler, model_engine_config
from ..weights.bundled import BUNDLED_DIR
from ..weights.loading import CONFIG_FILE, DIT_FILE, WeightsError

RELEASES = ("v1", "v1.1")
VARIANTS = ("tiny", "full")
COLOR_FIXES = ("adain", "wavelet", "none")
_ATTENTION, _ENGINE = SparseAttentionConfig(), EngineConfig()  # the reference's defaults


@dataclass(frozen=True)
class ModelSettings:
    """Everything about the model a job asks for (hashable: equal settings share an engine)."""

    weights: Path
    release: str | None = None  # None: detected from the folder
    variant: str = "tiny"
    sparse_ratio: float = _ATTENTION.sparse_ratio
    local_range: int = _ATTENTION.local_range
    color_fix: str = _ENGINE.color_fix
    seed: int = _ENGINE.seed
    stabilize: str = "auto"  # the stabilizer as the model folder recommends it (on for the bundled model)

    @property
    def load_key(self) -> tuple:
        """What decides which weights are in memory."""
        return (self.weights.resolve(), self.release, self.variant)

    def engine_settings(self) -> dict:
        return {"sparse_ratio": self.sparse_ratio, "local_range": self.local_range,
                "color_fix": self.color_fix, "seed": self.seed, "stabilize": self.stabilize}  # fmt: skip

    def describe(self) -> dict:
        return {**asdict(self), "weights": str(self.weights)}


@dataclass(frozen=True)
class ModelFolder:
    """A model folder offered in the page; ``problem`` says why it cannot be used."""

    path: Path
    label: str
    problem: str | None = None

    @property
    def available(self) -> bool:
        return self.problem is None

    def describe(self) -> dict:
        return {"path": str(self.path), "label": self.label, "available": self.available, "problem": self.problem}


def offered_folders(weights: tuple[Path, ...]) -> list[ModelFolder]:
    """The folders given with --weights, then the bundled model (which may not be installed)."""
    folders = [ModelFolder(p, p.name or str(p), folder_problem(p)) for p in weights]
    if BUNDLED_DIR not in weights:
        folders.append(ModelFolder(BUNDLED_DIR, "bundled small model", _bundled_problem()))
    return folders


def folder_problem(path: Path) -> str | None:
    if not path.is_dir():
        return f"{path}: no such folder"
    if not (path / CONFIG_FILE).is_file() and not (path / DIT_FILE).is_file():
        return f"{path}: not a model folder (no {CONFIG_FILE} or {DIT_FILE})"
    return None


def _bundled_problem() -> str | None:
    if (BUNDLED_DIR / CONFIG_FILE).is_file():
        return None
    return "the bundled model is not installed in this copy of FlashVSR (it ships with released packages)"


def no_model_message() -> str:
    return (
        "No model folder is available: the bundled model is not installed and no --weights folder was given. "
        "Restart with `flashvsr ui --weights FOLDER` (an official FlashVSR v1 / v1.1 folder or a FlashVSR "
        "model folder), or type a model folder's path in Model folder."
    )


@dataclass
class ModelUse:
    """The upscaler a job runs with, and how it was obtained (shown with the job)."""

    upscaler: Upscaler
    summary: str
    reused: bool
    load_seconds: float = 0.0


class ModelCache:
    """Holds at most one model in memory (GPU memory is the scarce resource); used by the one
    worker thread only."""

    def __init__(self, device: str | None = None, dtype: str | None = None):
        self.device, self.dtype = device, dtype
        self.summary: str | None = None  # the loaded model's report, None when none is loaded
        self.loaded: dict | None = None  # what the page shows about the loaded model
        self._key: tuple | None = None
        self._settings: ModelSettings | None = None
        self._upscaler: Upscaler | None = None

    def acquire(self, settings: ModelSettings) -> ModelUse:
        if self._upscaler is not None and self._key == settings.load_key:
            if settings != self._settings:
                self._upscaler = self._rebuild_engine(settings)
                self._settings = settings
            return ModelUse(self._upscaler, self.summary, reused=True)
        return self._load(settings)

    def _load(self, settings: ModelSettings) -> ModelUse:
        self.forget()  # free the old model before the new one is loaded next to it
        started = time.monotonic()
        if not settings.weights.is_dir():
            raise WeightsError(f"model folder {settings.weights} does not exist")
        upscaler = Upscaler.load(settings.weights, release=settings.release, variant=settings.variant,
                                 device=self.device, dtype=self.dtype, **settings.engine_settings())  # fmt: skip
        self._key, self._upscaler, self._settings = settings.load_key, upscaler, settings
        self.summary = upscaler.report.summary()
        report = upscaler.report
        self.loaded = {"folder": str(report.folder), "name": report.folder.name, "release": report.release,
                       "variant": settings.variant, "summary": self.summary}  # fmt: skip
        return ModelUse(upscaler, self.summary, reused=False, load_seconds=time.monotonic() - started)

    def _rebuild_engine(self, settings: ModelSettings) -> Upscaler:
        old = self._upscaler
        config = model_engine_config(old.models, variant=settings.variant, device=str(old.device), dtype=old.config.dtype,
                                     **settings.engine_settings())  # fmt: skip
        upscaler = Upscaler(old.models, config)
        upscaler.report = old.report
        return upscaler

    def forget(self) -> None:
        """Drop the loaded model (before loading another, or after a failure)."""
        had_model = self._upscaler is not None
        self._key = self._upscaler = self._settings = self.summary = self.loaded = None
        if had_model:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
