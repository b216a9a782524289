"""Media in and out: videos (PyAV), images and image folders (Pillow), atomic outputs.

    from flashvsr.io import probe
    info = probe("clip.mp4")        # MediaInfo: size, frames, fps (a Fraction), duration, audio, rotation
    print(info.summary())
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from .images import DEFAULT_SEQUENCE_FPS, ImageReader, is_image_file, probe_image, probe_image_folder
from .media import IMAGE, IMAGE_SEQUENCE, VIDEO, AudioInfo, MediaError, MediaInfo, TimedFrame
from .video import VideoReader, probe_video


def probe(path: str | Path, fps: Fraction = DEFAULT_SEQUENCE_FPS) -> MediaInfo:
    """Describe a video file, an image file or a folder of images (``fps`` applies to folders)."""
    path = Path(path)
    if path.is_dir():
        return probe_image_folder(path, fps)
    if is_image_file(path):
        return probe_image(path)
    return probe_video(path)


def open_reader(info: MediaInfo) -> VideoReader | ImageReader:
    """A reader yielding the input's frames as :class:`TimedFrame` s, in the info's time base."""
    return VideoReader(info.path, info) if info.kind == VIDEO else ImageReader(info)


__all__ = [
    "IMAGE",
    "IMAGE_SEQUENCE",
    "VIDEO",
    "AudioInfo",
    "MediaError",
    "MediaInfo",
    "TimedFrame",
    "open_reader",
    "probe",
]
