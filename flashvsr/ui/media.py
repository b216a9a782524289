"""What the page needs to know about media: properties as JSON, single frames as images, and
whether a browser can play a file (else the comparison shows decoded frames)."""

from __future__ import annotations

import contextlib
import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import IMAGE, VIDEO, MediaError, MediaInfo, open_reader, probe

BROWSER_VIDEO_CODECS = frozenset({"h264", "vp8", "vp9", "av1"})  # what Chromium, Firefox and Safari share
BROWSER_PIXEL_FORMATS = frozenset({"yuv420p", "yuvj420p"})  # 8-bit 4:2:0; others fail in some browsers
BROWSER_CONTAINERS = frozenset({".mp4", ".m4v", ".webm", ".mov", ".mkv"})
PNG_COMPRESSION = 1  # frames are looked at once: fast beats small


def describe_media(info: MediaInfo) -> dict:
    """The properties shown before a job starts (sizes as displayed, after rotation)."""
    return {
        "kind": info.kind,
        "width": info.width,
        "height": info.height,
        "frames": info.frames,
        "fps": float(info.fps) if info.fps and info.kind != IMAGE else None,
        "fps_exact": f"{info.fps.numerator}/{info.fps.denominator}" if info.fps and info.kind != IMAGE else None,
        "duration": info.duration if info.kind != IMAGE else None,
        "rotation": info.rotation,
        "pixel_aspect": str(info.pixel_aspect) if info.pixel_aspect else None,
        "codec": info.codec,
        "pixel_format": info.pixel_format,
        "audio": [
            {"codec": a.codec, "sample_rate": a.sample_rate, "channels": a.channels, "language": a.language}
            for a in info.audio
        ],
        "summary": info.summary(),
    }


def browser_playable(info: MediaInfo) -> bool:
    return (
        info.kind == VIDEO
        and info.codec in BROWSER_VIDEO_CODECS
        and info.pixel_format in BROWSER_PIXEL_FORMATS
        and info.path.suffix.lower() in BROWSER_CONTAINERS
    )


def read_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` (from 0) of a video, image or image folder, upright, as (H, W, 3) uint8."""
    info = probe(path)
    if not 0 <= index < max(info.frames, 1):
        raise MediaError(f"{path.name}: has no frame {index} (it has {info.frames})")
    with contextlib.closing(open_reader(info).frames()) as frames:
        frame = next(itertools.islice(frames, index, None), None)
    if frame is None:
        raise MediaError(f"{path.name}: frame {index} could not be decoded")
    return frame.image


def encode_png(image: np.ndarray, width: int | None = None) -> bytes:
    """PNG bytes of a frame, shrunk to ``width`` (keeping its aspect) when given and smaller."""
    picture = Image.fromarray(image)
    if width and width < picture.width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    return buffer.getvalue()
