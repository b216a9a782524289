"""What the io package hands around: media descriptions, timed frames, and its one error type."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .color import ColorInfo

VIDEO = "video"
IMAGE_SEQUENCE = "image sequence"
IMAGE = "image"


class MediaError(Exception):
    """An input or output that cannot be used; the message names the file and says why."""


@dataclass(frozen=True)
class AudioInfo:
    index: int  # stream index in the container
    codec: str
    sample_rate: int
    channels: int
    duration: float | None  # seconds
    language: str | None = None

    def describe(self) -> str:
        return f"{self.codec} {self.sample_rate} Hz {self.channels} ch"


@dataclass(frozen=True)
class MediaInfo:
    """One input as the user sees it: size after rotation, frame count, exact frame rate."""

    path: Path
    kind: str  # VIDEO, IMAGE_SEQUENCE or IMAGE
    width: int
    height: int
    frames: int
    fps: Fraction | None  # None for a single image
    duration: float | None  # seconds
    time_base: Fraction  # unit of the frames' pts
    rotation: int = 0  # degrees counter-clockwise applied to the stored frames for display
    pixel_aspect: Fraction | None = None  # non-square pixels (anamorphic video), as displayed; None: square
    codec: str | None = None
    pixel_format: str | None = None
    audio: tuple[AudioInfo, ...] = ()
    color: ColorInfo = field(default_factory=ColorInfo)
    tags: dict[str, str] = field(default_factory=dict)  # container metadata: title, creation_time…

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def summary(self) -> str:
        parts = [f"{self.path.name}: {self.kind} {self.width}×{self.height}", plural(self.frames, "frame")]
        if self.fps is not None and self.kind != IMAGE:
            parts.append(f"{_fps_text(self.fps)} fps")
        if self.duration is not None:
            parts.append(f"{self.duration:.2f} s")
        if self.rotation:
            parts.append(f"rotated {self.rotation}°")
        if self.pixel_aspect:
            parts.append(f"pixel aspect {self.pixel_aspect.numerator}:{self.pixel_aspect.denominator}")
        if self.audio:
            parts.append("audio " + ", ".join(a.describe() for a in self.audio))
        return ", ".join(parts)


@dataclass(frozen=True)
class TimedFrame:
    """An upright (H, W, 3) uint8 RGB frame with its timestamp in the source's time base."""

    image: np.ndarray
    pts: int
    duration: int | None = None


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _fps_text(fps: Fraction) -> str:
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator} (≈{float(fps):.3f})"
