"""Frame access for training and curation: videos (PyAV, else OpenCV), image sequences, photos.

Training samples short clips at random positions; segments are decoded once and kept in a
small per-process cache, which suits data sets of up to a few thousand clips per worker.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m"}


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def sequence_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS), key=lambda p: natural_key(p.name))


def read_image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def read_video(path: Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames [start, start+count) of a video as (T, H, W, 3) uint8."""
    frames = []
    for i, frame in enumerate(_decode(path)):
        if i >= start:
            frames.append(frame)
        if count is not None and len(frames) >= count:
            break
    if not frames:
        raise ValueError(f"{path}: no frames at {start}")
    return np.stack(frames)


def _decode(path: Path):
    try:
        import av
    except ImportError:  # GPU machines without PyAV: OpenCV's bundled FFmpeg
        yield from _decode_opencv(path)
        return
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def _decode_opencv(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield bgr[..., ::-1].copy()
    finally:
        cap.release()


def read_segment(root: Path, path: str, kind: str, start: int, frames: int) -> np.ndarray:
    full = root / path
    if kind == "image":
        return read_image(full)[None]
    if kind == "sequence":
        files = sequence_files(full)[start : start + frames]
        return np.stack([read_image(f) for f in files])
    return read_video(full, start, frames)


def capped(frames: np.ndarray, max_short_side: int) -> np.ndarray:
    """Downscale (T, H, W, 3) frames whose short side exceeds ``max_short_side`` (0: never),
    with PIL's antialiased bicubic."""
    h, w = frames.shape[1:3]
    if max_short_side <= 0 or min(h, w) <= max_short_side:
        return frames
    scale = max_short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC, reducing_gap=None)) for f in frames])


def frame_file(folder: Path, path: str, kind: str, start: int, frames: int, max_short_side: int) -> Path:
    key = f"{path}|{kind}|{start}|{frames}|{max_short_side}".encode()
    return Path(folder) / f"{hashlib.sha1(key).hexdigest()[:20]}.npy"


def store_segment(folder: Path, root: Path, path: str, kind: str, start: int, frames: int, max_short_side: int) -> Path:
    """Decode a segment once into ``folder`` as .npy (atomically); later reads map it."""
    out = frame_file(folder, path, kind, start, frames, max_short_side)
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, capped(read_segment(root, path, kind, start, frames), max_short_side))
        tmp.replace(out)
    return out


class SegmentCache:
    """Decoded (and prescaled) segments, least recently used dropped first (per worker).
    With ``frame_store`` (a folder filled by ``flashvsr data cache``), segments are
    memory-mapped from disk and shared by every worker and stage instead."""

    def __init__(self, root: Path, max_short_side: int = 0, max_bytes: int = 4 * 2**30, frame_store: str = ""):
        self.root = Path(root)
        self.max_short_side = max_short_side
        self.max_bytes = max_bytes
        self.frame_store = Path(frame_store) if frame_store else None
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, path: str, kind: str, start: int, frames: int) -> np.ndarray:
        key = (path, kind, start, frames)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        if self.frame_store is not None:
            stored = store_segment(self.frame_store, self.root, path, kind, start, frames, self.max_short_side)
            value = np.load(stored, mmap_mode="r")
        else:
            value = capped(read_segment(self.root, path, kind, start, frames), self.max_short_side)
        self._items[key] = value
        while len(self._items) > 1 and sum(v.nbytes for v in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)
        return value
