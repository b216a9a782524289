"""Tiny training set-ups for the CPU smoke tests: synthetic clips, photos and stage configs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from flashvsr.data.curate import ScanConfig, Thresholds, scan, select

from .conftest import tiny_model_config

TINY_MODEL_TOML = """
[model.dit]
dim = 32
num_layers = 2
num_heads = 2
ffn_dim = 64
text_dim = 16
text_len = 8
freq_dim = 16

[model.lq_proj]
hidden1 = 24
hidden2 = 32
out_dim = 32

[model.tc_decoder]
channels = [16, 8, 8]

[model.vae]
base_dim = 8
"""


def moving_scene(frames: int, size: int, seed: int) -> np.ndarray:
    """A textured scene that pans: (T, size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    big = rng.random((size // 8 + 8, size // 8 + 8, 3))
    big = np.asarray(Image.fromarray((big * 255).astype(np.uint8)).resize((size + 64, size + 64), Image.BICUBIC))
    big = np.clip(big.astype(np.float32) + rng.normal(0, 25, big.shape), 0, 255).astype(np.uint8)
    return np.stack([big[t % 32 : t % 32 + size, (2 * t) % 64 : (2 * t) % 64 + size] for t in range(frames)])


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    return path


def make_dataset(root: Path, size: int = 160, frames: int = 60) -> Path:
    """Two clips and two photos under ``root``, scored and selected into a manifest."""
    (root / "video").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    for i in range(2):
        write_video(root / "video" / f"clip{i}.mp4", moving_scene(frames, size, seed=i))
        Image.fromarray(moving_scene(1, size, seed=10 + i)[0]).save(root / "images" / f"photo{i}.png")
    scores = scan([root / "video", root / "images"], root / "scores.jsonl", ScanConfig(segment_seconds=100), root)
    lenient = Thresholds(min_sharpness=0, max_noise=1e9, max_blockiness=1e9, max_clipped=1, min_motion=0, max_motion=1e9)
    select([scores], root / "manifest.jsonl", lenient)
    return root / "manifest.jsonl"


def stage_toml(stage: str, data_root: Path, out: Path, vae: Path | None = None, init: Path | None = None,
               teacher: Path | None = None, steps: int = 4, latent_frames: int = 2, extra: str = "") -> str:  # fmt: skip
    lines = [f'stage = "{stage}"']
    if vae:
        lines.append(f'vae = "{vae}"')
    if init:
        lines.append(f'init = "{init}"')
    lines += [
        "[run]", f'out_dir = "{out}"', f"steps = {steps}", 'precision = "fp32"', "log_every = 1",
        f"checkpoint_every = {steps}", f"validate_every = {steps}", "ema_decay = 0.9",
        "[data]", f'manifest = "{data_root / "manifest.jsonl"}"', f'root = "{data_root}"',
        f"latent_frames = {latent_frames}", "crop = 128", "batch_size = 1", "workers = 0", "frame_step = [1]",
        "image_prob = 0.3", "[data.degradation]", 'mode = "bicubic"',
        "[optim]", "lr = 1e-3", "warmup_steps = 1",
    ]  # fmt: skip
    if teacher:
        lines += ["[dmd]", f'teacher = "{teacher}"']
    return "\n".join(lines) + "\n" + extra + TINY_MODEL_TOML


def tiny_config():
    return tiny_model_config()
