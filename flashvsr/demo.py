"""``flashvsr demo``: render a clip, shrink it ×4, upscale it back, compare.

The scene is drawn here (text, stripes, shapes and texture panning past the camera), so the
demo needs no downloaded media and its ground truth is known exactly:

    demo/input.mp4           the low-resolution clip (with a tone as its audio track)
    demo/output.mp4          FlashVSR ×4, same frame count, frame rate and audio
    demo/side_by_side.mp4    bicubic | FlashVSR | ground truth, labelled
    demo/side_by_side.png    the middle frame of that
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from .data.degrade import bicubic_downscale
from .evaluation import frame_metrics, upscale_baseline

SCALE = 4
TONE_HZ = 440.0
AUDIO_RATE = 48000


@dataclass(frozen=True)
class DemoConfig:
    width: int = 512  # ground-truth size; the input is width/4 × height/4
    height: int = 288
    frames: int = 48
    fps: int = 24
    seed: int = 0


def render_scene(cfg: DemoConfig) -> np.ndarray:
    """(T, H, W, 3) uint8: a wide drawing panned across, slowly zooming."""
    rng = np.random.default_rng(cfg.seed)
    wide_w, wide_h = cfg.width * 2, int(cfg.height * 1.4)
    canvas = Image.new("RGB", (wide_w, wide_h))
    draw = ImageDraw.Draw(canvas)
    for y in range(wide_h):  # sky-to-ground gradient
        t = y / wide_h
        draw.line([(0, y), (wide_w, y)], fill=(int(90 + 120 * t), int(140 + 60 * t), int(220 - 120 * t)))
    for x in range(0, wide_w, 24):  # a brick wall along the bottom
        for row, y in enumerate(range(int(wide_h * 0.62), wide_h, 12)):
            off = 12 if row % 2 else 0
            draw.rectangle([x + off, y, x + off + 21, y + 9], fill=(150 + rng.integers(-20, 20), 70, 50))
    for x in range(0, wide_w, 7):  # a fence of thin stripes
        draw.line([(x, int(wide_h * 0.45)), (x, int(wide_h * 0.6))], fill=(245, 245, 235), width=2)
    for _ in range(14):  # shapes
        cx, cy, r = rng.integers(0, wide_w), rng.integers(0, int(wide_h * 0.45)), rng.integers(8, 30)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=(20, 20, 30), width=3, fill=tuple(int(v) for v in rng.integers(60, 255, 3)))
    font = ImageFont.load_default(size=44)
    small = ImageFont.load_default(size=14)
    draw.text((40, 66), "FlashVSR streaming super-resolution", font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(0, 0, 0))
    for i in range(6):
        draw.text((60 + 150 * i, int(wide_h * 0.36)), f"detail {i}: 0123456789", font=small, fill=(10, 10, 10))
    texture = rng.normal(0, 6, (wide_h, wide_w, 3))
    scene = np.clip(np.asarray(canvas, dtype=np.float32) + texture, 0, 255).astype(np.uint8)
    return np.stack([_camera(scene, cfg, t) for t in range(cfg.frames)])


def _camera(scene: np.ndarray, cfg: DemoConfig, t: int) -> np.ndarray:
    zoom = 1.0 + 0.1 * t / max(1, cfg.frames - 1)
    w, h = int(cfg.width * 1.1 / zoom), int(cfg.height * 1.1 / zoom)
    x = int(t * (scene.shape[1] - w) / max(1, cfg.frames - 1) * 0.6)
    y = (scene.shape[0] - h) // 2
    crop = Image.fromarray(scene[y : y + h, x : x + w])
    return np.asarray(crop.resize((cfg.width, cfg.height), Image.LANCZOS))


def shrink(frames: np.ndarray) -> np.ndarray:
    hr = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    return (bicubic_downscale(hr, SCALE) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def write_clip(path: Path, frames: np.ndarray, fps: int, with_tone: bool) -> Path:
    """H.264 video (and an AAC tone as long as the video) with exact 1/fps timestamps."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "14"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = out.add_stream("aac", rate=AUDIO_RATE) if with_tone else None
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio is not None:
            _write_tone(out, audio, len(frames) / fps)
    return path


def _write_tone(out, stream, seconds: float) -> None:
    n = int(seconds * AUDIO_RATE)
    samples = (0.2 * np.sin(2 * math.pi * TONE_HZ * np.arange(n) / AUDIO_RATE)).astype(np.float32)
    chunk = 1024
    for start in range(0, n, chunk):
        frame = av.AudioFrame.from_ndarray(samples[None, start : start + chunk], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = AUDIO_RATE, start
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def read_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def labelled_row(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    h, w = panels[0][1].shape[:2]
    canvas = Image.new("RGB", (w * len(panels), h))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=16)
    for i, (name, img) in enumerate(panels):
        canvas.paste(Image.fromarray(img), (i * w, 0))
        draw.text((i * w + 6, 4), name, font=font, fill=(255, 255, 0), stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(canvas)


def run_demo(folder: Path, upscaler, cfg: DemoConfig = DemoConfig(), quiet: bool = False) -> dict[str, float]:
    """Render, shrink, upscale with ``upscaler`` (an :class:`~flashvsr.pipeline.Upscaler`),
    write the comparison; returns PSNR-Y of bicubic and FlashVSR against the ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = render_scene(cfg)
    write_clip(folder / "input.mp4", shrink(truth), cfg.fps, with_tone=True)
    lr = read_frames(folder / "input.mp4")  # what the upscaler sees, codec included
    with tqdm(total=cfg.frames, desc="upscaling", unit="frame", disable=quiet) as bar:
        upscaler.upscale_file(folder / "input.mp4", folder / "output.mp4", scale=SCALE, overwrite=True,
                              progress=lambda done, total: bar.update(done - bar.n))  # fmt: skip
    ours = read_frames(folder / "output.mp4")
    bicubic = upscale_baseline("bicubic", lr, truth.shape[1:3])
    rows = [labelled_row([("bicubic", b), ("FlashVSR", o), ("ground truth", g)]) for b, o, g in zip(bicubic, ours, truth)]
    write_clip(folder / "side_by_side.mp4", np.stack(rows), cfg.fps, with_tone=False)
    Image.fromarray(rows[len(rows) // 2]).save(folder / "side_by_side.png")
    return {
        "frames": float(len(ours)),
        "psnr_y_bicubic": frame_metrics(bicubic, truth, SCALE)["psnr_y"],
        "psnr_y_flashvsr": frame_metrics(ours, truth, SCALE)["psnr_y"],
    }
