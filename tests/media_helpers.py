"""Test media made on the spot with PyAV and Pillow, and ways to read results back."""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

AUDIO_RATE = 48_000
AUDIO_FRAME = 1024


def moving_pattern(index: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth colourful (H, W, 3) uint8 frame that drifts with ``index``."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = index * 0.3 + seed
    r = 128 + 100 * np.sin(x / max(width, 1) * 6.28 + phase)
    g = 128 + 100 * np.cos(y / max(height, 1) * 6.28 - phase)
    b = 128 + 60 * np.sin((x + y) / max(width + height, 1) * 12.0 + phase)
    return np.stack([r, g, b], axis=-1).clip(0, 255).astype(np.uint8)


def write_video(
    path: Path,
    frames: int,
    width: int,
    height: int,
    rate: Fraction = Fraction(25),
    time_base: Fraction | None = None,
    pts: list[int] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio: str | tuple[str, ...] | None = None,
    audio_seconds: float | None = None,
    rotation: int | None = None,
    color: dict | None = None,
    images: list[np.ndarray] | None = None,
    sample_aspect_ratio: Fraction | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """A video with ``frames`` frames (timestamps ``pts`` in ``time_base``, default one frame per
    1/rate), optionally audio tracks (one per codec in ``audio``), a rotation and colour tags."""
    time_base = time_base or 1 / rate
    pts = pts if pts is not None else [round(i / rate / time_base) for i in range(frames)]
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if rotation is not None:
            video.set_display_rotation(rotation)
        out.metadata.update(metadata or {})
        if sample_aspect_ratio is not None:
            video.codec_context.sample_aspect_ratio = sample_aspect_ratio
        for key, value in (color or {}).items():
            setattr(video.codec_context, key, value)
        codecs = (audio,) if isinstance(audio, str) else tuple(audio or ())
        sounds = [_audio_stream(out, codec) for codec in codecs]
        for i in range(frames):
            image = images[i] if images is not None else moving_pattern(i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if color and "colorspace" in color:
                frame = frame.reformat(format=pix_fmt, dst_colorspace=_sws(color["colorspace"]),
                                       dst_color_range=_range(color.get("color_range", 1)))  # fmt: skip
            frame.pts, frame.time_base = pts[i], time_base
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        seconds = audio_seconds if audio_seconds is not None else float(pts[-1] * time_base + 1 / rate)
        for sound in sounds:
            _write_tone(out, sound, seconds)
    return path


def _sws(matrix: int) -> str:
    return {1: "itu709", 5: "itu601", 6: "itu601", 9: "bt2020"}[matrix]


def _range(code: int) -> str:
    return {1: "MPEG", 2: "JPEG"}[code]


def _audio_stream(out, codec: str):
    stream = out.add_stream(codec, rate=AUDIO_RATE if codec != "pcm_mulaw" else 8000)
    stream.layout = "stereo" if codec != "pcm_mulaw" else "mono"
    return stream


def _write_tone(out, stream, seconds: float) -> None:
    ctx = stream.codec_context
    fmt = ctx.codec.audio_formats[0].name
    channels = 2 if stream.layout.name == "stereo" else 1
    total = int(seconds * stream.rate)
    done = 0
    while done < total:
        n = min(AUDIO_FRAME, total - done)
        t = (np.arange(done, done + n) / stream.rate).astype(np.float32)
        wave = 0.2 * np.sin(2 * np.pi * 440 * t)
        planar = np.repeat(wave[None], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(_as_format(planar, fmt), format=fmt, layout=stream.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = stream.rate, done, Fraction(1, stream.rate)
        out.mux(stream.encode(frame))
        done += n
    out.mux(stream.encode(None))


SAMPLE_TYPES = {"flt": (np.float32, 1.0), "s16": (np.int16, 32767), "s32": (np.int32, 2**31 - 1)}


def _as_format(planar: np.ndarray, fmt: str) -> np.ndarray:
    """(channels, samples) floats → PyAV's layout for ``fmt``: planar (C, N) or packed (1, N·C)."""
    dtype, full_scale = SAMPLE_TYPES[fmt.rstrip("p")]
    samples = (planar * full_scale).astype(dtype)
    return samples if fmt.endswith("p") else samples.T.reshape(1, -1)


def write_images(folder: Path, count: int, width: int, height: int, names=None, suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"frame{i}" for i in range(count)]
    paths = []
    for i, name in enumerate(names):
        path = folder / f"{name}{suffix}"
        Image.fromarray(moving_pattern(i, width, height)).save(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Reading back


def video_timestamps(path: Path) -> list[Fraction]:
    """Every decoded frame's presentation time in seconds, exactly."""
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(c.streams.video[0])]


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def audio_packets(path: Path, index: int = 0) -> list[tuple[Fraction, bytes]]:
    """(time, payload) of every audio packet of the index-th audio stream."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[index]
        return [(p.pts * p.time_base, bytes(p)) for p in c.demux(stream) if p.size]


def audio_seconds(path: Path, index: int = 0) -> float:
    """Decoded audio duration: samples / rate."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[index]
        samples = sum(f.samples for f in c.decode(stream))
        return samples / stream.codec_context.sample_rate


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
