"""flashvsr eval metrics and reports, and the flashvsr demo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from flashvsr import cli
from flashvsr.demo import DemoConfig, read_frames, run_demo
from flashvsr.evaluation import EvalConfig, evaluate, frame_metrics, load_ground_truth, psnr, ssim, temporal_errors
from flashvsr.pipeline import Upscaler
from flashvsr.weights.loading import save_model

from .conftest import tiny_models
from .training_helpers import moving_scene, write_video


def test_psnr_and_ssim_reference_values():
    a = torch.full((1, 1, 32, 32), 100.0)
    assert psnr(a, a) == math.inf
    assert psnr(a + 1, a) == pytest.approx(10 * math.log10(255**2), abs=1e-9)  # MSE 1 → 48.13 dB
    img = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 255
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, img.flip(-1)) < 0.2


def test_temporal_errors_see_flicker_not_motion():
    frames = moving_scene(6, 96, 0)
    steady, change = temporal_errors(frames, frames)
    assert steady < 3.0 and change == 0.0  # the truth moves but warps onto itself
    flicker = frames.astype(np.int16)
    flicker[1::2] += 25
    flicker = np.clip(flicker, 0, 255).astype(np.uint8)
    steady, change = temporal_errors(flicker, frames)
    assert steady > 15.0 and change > 15.0
    brighter = np.clip(frames.astype(np.int16) + 10, 0, 255).astype(np.uint8)  # wrong on every frame alike
    assert temporal_errors(brighter, frames)[1] < 2.0  # the change measure sees changes, not a steady bias


def test_frame_metrics_shave_borders():
    gt = moving_scene(2, 64, 1)
    broken = gt.copy()
    broken[:, :2] = 0  # damage only the border
    assert frame_metrics(broken, gt, shave=4)["psnr_rgb"] == math.inf
    assert frame_metrics(broken, gt, shave=0)["psnr_rgb"] < 40


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_model(tiny_models(), tmp_path_factory.mktemp("m") / "tiny")


def test_evaluate_writes_tables_and_crops(tmp_path, tiny_folder):
    clip = write_video(tmp_path / "gt.mp4", moving_scene(9, 128, 3))
    report = evaluate([clip], ["bicubic", "lanczos", str(tiny_folder)], EvalConfig(max_frames=9), tmp_path / "out")
    assert [r.method for r in report.rows] == ["bicubic", "lanczos", "tiny"]
    assert all(r.frames == 9 and 10 < r.psnr_y < 60 and 0 < r.ssim_rgb <= 1 for r in report.rows)
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| mean | bicubic |" in table and "| gt | tiny |" in table
    assert len((tmp_path / "out" / "results.csv").read_text().splitlines()) == 1 + 3 + 3
    assert (tmp_path / "out" / "crops" / "gt.png").is_file()


def test_load_ground_truth_takes_a_centred_crop(tmp_path):
    frames = moving_scene(3, 128, 2)
    clip = write_video(tmp_path / "gt.mp4", frames)
    whole = load_ground_truth(clip, 0, 4)
    crop = load_ground_truth(clip, 0, 4, crop=(62, 90))  # cut down to multiples of 4
    assert crop.shape == (3, 60, 88, 3)
    y, x = (128 - 62) // 2, (128 - 90) // 2
    assert np.array_equal(crop, whole[:, y : y + 60, x : x + 88])
    assert load_ground_truth(clip, 2, 4, crop=(500, 500)).shape == (2, 128, 128, 3)


def test_demo_renders_upscales_and_compares(tmp_path, tiny_folder):
    up = Upscaler.load(tiny_folder, device="cpu")
    scores = run_demo(tmp_path, up, DemoConfig(width=256, height=128, frames=10), quiet=True)
    assert scores["frames"] == 10 and np.isfinite(scores["psnr_y_bicubic"])
    assert read_frames(tmp_path / "input.mp4").shape == (10, 32, 64, 3)
    assert read_frames(tmp_path / "output.mp4").shape == (10, 128, 256, 3)
    assert read_frames(tmp_path / "side_by_side.mp4").shape == (10, 128, 768, 3)
    assert (tmp_path / "side_by_side.png").is_file()


def test_eval_command_finds_clips_in_folders_and_sequences(tmp_path, capsys):
    videos = tmp_path / "gt" / "videos"
    videos.mkdir(parents=True)
    write_video(videos / "a.mp4", moving_scene(3, 64, 4))
    Image.fromarray(moving_scene(1, 64, 5)[0]).save(tmp_path / "gt" / "photo.png")
    seq = tmp_path / "frames"
    seq.mkdir()
    for i, f in enumerate(moving_scene(3, 64, 6)):
        Image.fromarray(f).save(seq / f"{i:03d}.png")
    code = cli.main(["eval", str(tmp_path / "gt"), "--sequence", str(seq), "--baselines", "bicubic",
                     "--crop", "48x32", "-o", str(tmp_path / "out")])  # fmt: skip
    assert code == 0
    rows = (tmp_path / "out" / "results.csv").read_text().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == ["a", "frames", "mean", "photo"]
    assert {r.split(",")[2] for r in rows[:3]} == {"3", "1"}
    assert sorted(p.name for p in (tmp_path / "out" / "crops").iterdir()) == ["a.png", "frames.png", "photo.png"]
    assert cli.main(["eval", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "o2")]) != 0
    assert "not found" in capsys.readouterr().err
