"""Image files and folders of images (a folder is a sequence, in natural order: 2 before 10).

Images are read upright (EXIF orientation applied) as 8-bit RGB, and written with their
ICC colour profile kept. A sequence gets timestamps 0, 1, 2… in a time base of 1/fps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .color import SRGB
from .media import IMAGE, IMAGE_SEQUENCE, MediaError, MediaInfo, TimedFrame
from .video import VIDEO_SUFFIXES, check_readable_file

# Pillow format names by file extension: what is read from folders and written by --format.
IMAGE_SUFFIXES = {
    ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
    ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF",
}  # fmt: skip
IMAGE_FORMATS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif"}
DEFAULT_IMAGE_FORMAT = "png"
DEFAULT_QUALITY = 95  # JPEG / WebP quality
DEFAULT_SEQUENCE_FPS = Fraction(30)
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
SIXTEEN_TO_EIGHT_BITS = 8  # right shift


def natural_key(path: Path) -> tuple:
    """Sort key that orders embedded numbers by value: frame2 before frame10."""
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and _is_image_name(p)), key=natural_key)


def list_videos(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _is_image_name(path: Path) -> bool:
    return is_image_file(path) and not path.name.startswith(".")


# --------------------------------------------------------------------------------------------
# Reading


def read_image(path: Path) -> tuple[np.ndarray, bytes | None]:
    """(H, W, 3) uint8 RGB, upright, and the ICC profile if the file has one."""
    check_readable_file(path)
    try:
        with Image.open(path) as img:
            icc = img.info.get("icc_profile")
            return _to_rgb8(ImageOps.exif_transpose(img)), icc
    except Image.DecompressionBombError:
        raise MediaError(f"{path}: image is too large to read safely") from None
    except (OSError, ValueError, SyntaxError) as e:  # Pillow raises SyntaxError for some broken headers
        raise MediaError(f"{path}: not an image Pillow can read ({e})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, from the header only."""
    width, height, _, _ = image_header(path)
    return width, height


def image_header(path: Path) -> tuple[int, int, str, bytes | None]:
    """(width, height, format, ICC profile) from the header only; the size is as displayed."""
    check_readable_file(path)
    try:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(EXIF_ORIENTATION) in TRANSPOSED_ORIENTATIONS:
                width, height = height, width
            return width, height, (img.format or "").lower(), img.info.get("icc_profile")
    except Image.DecompressionBombError:
        raise MediaError(f"{path}: image is too large to read safely") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise MediaError(f"{path}: not an image Pillow can read ({e})") from None


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in SIXTEEN_BIT_MODES:  # 16-bit greyscale: keep the high byte
        gray = (np.asarray(img).astype(np.uint32) >> SIXTEEN_TO_EIGHT_BITS).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.array(img.convert("RGB"))  # a writable copy (torch refuses read-only arrays)


def probe_image(path: Path) -> MediaInfo:
    width, height, codec, _ = image_header(path)
    return MediaInfo(path, IMAGE, width, height, frames=1, fps=None, duration=None,
                     time_base=1 / DEFAULT_SEQUENCE_FPS, codec=codec, color=SRGB)  # fmt: skip


def probe_image_folder(folder: Path, fps: Fraction = DEFAULT_SEQUENCE_FPS) -> MediaInfo:
    """A folder of images as a video: every image must have the first one's size."""
    paths = list_images(folder)
    if not paths:
        raise MediaError(f"{folder}: no images in this folder")
    width, height = image_size(paths[0])
    for path in paths[1:]:
        w, h = image_size(path)
        if (w, h) != (width, height):
            raise MediaError(
                f"{path}: is {w}×{h} but the sequence is {width}×{height} (from {paths[0].name}); "
                f"to upscale images one by one, pass them as separate inputs"
            )
    return MediaInfo(folder, IMAGE_SEQUENCE, width, height, frames=len(paths), fps=fps,
                     duration=float(len(paths) / fps), time_base=1 / fps, color=SRGB)  # fmt: skip


class ImageReader:
    """One image file, or a folder of them, as timed frames (pts 0, 1, 2… in 1/fps)."""

    def __init__(self, info: MediaInfo):
        self.info = info
        self.paths = list_images(info.path) if info.kind == IMAGE_SEQUENCE else [info.path]

    @property
    def icc_profile(self) -> bytes | None:
        """The first image's colour profile, kept in image outputs."""
        return image_header(self.paths[0])[3]

    def frames(self) -> Iterator[TimedFrame]:
        for index, path in enumerate(self.paths):
            image, _ = read_image(path)
            if image.shape[:2] != (self.info.height, self.info.width):
                raise MediaError(f"{path}: changed size while being read")
            yield TimedFrame(image, pts=index, duration=1)


# --------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class ImageOutputSpec:
    suffix: str  # ".png", ".jpg"…
    quality: int = DEFAULT_QUALITY
    icc_profile: bytes | None = None

    def save_options(self) -> dict:
        pil_format = IMAGE_SUFFIXES[self.suffix]
        options: dict = {"format": pil_format}
        if pil_format in ("JPEG", "WEBP"):
            options["quality"] = self.quality
        if self.icc_profile and pil_format != "BMP":
            options["icc_profile"] = self.icc_profile
        return options


def save_image(image: np.ndarray, path: Path, spec: ImageOutputSpec) -> None:
    Image.fromarray(image, "RGB").save(path, **spec.save_options())


class ImageSequenceWriter:
    """Writes frames as image files into a folder, named by the given stems."""

    def __init__(self, folder: Path, stems: Iterator[str], spec: ImageOutputSpec):
        self.folder = folder
        self.stems = stems
        self.spec = spec

    def write(self, frame: TimedFrame) -> None:
        save_image(frame.image, self.folder / f"{next(self.stems)}{self.spec.suffix}", self.spec)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class SingleImageWriter:
    """Writes the one frame of an image job."""

    def __init__(self, path: Path, spec: ImageOutputSpec):
        self.path = path
        self.spec = spec
        self.written = False

    def write(self, frame: TimedFrame) -> None:
        if self.written:
            raise MediaError(f"{self.path}: an image output holds one frame; write a video or a folder instead")
        save_image(frame.image, self.path, self.spec)
        self.written = True

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass
