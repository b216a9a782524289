"""Data curation scores and selection, and the degradation pipeline."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from flashvsr.data import curate
from flashvsr.data.curate import ScanConfig, Thresholds, frame_scores, merge_consecutive, scan, select
from flashvsr.data.degrade import DegradationConfig, KernelParams, bicubic_downscale, degrade, draw_clip, sinc_kernel, video_codec
from flashvsr.data.manifest import Segment, read_manifest

from .conftest import REPO
from .training_helpers import moving_scene, write_video


def photo(seed=0, size=256) -> np.ndarray:
    return moving_scene(1, size, seed)[0]


def clean_photo(size=256) -> np.ndarray:
    """Smooth colour fields with hard-edged shapes: sharp, and free of noise."""
    rng = np.random.default_rng(0)
    field = Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    img = np.asarray(field).copy()
    for _ in range(12):
        y, x, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(6, 30))]
        img[max(0, y - r) : y + r, max(0, x - r) : x + r] = rng.integers(0, 255, 3)
    return img


def test_classical_scores_rank_images_as_expected():
    sharp = clean_photo()
    blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(3)))
    noisy = np.clip(sharp.astype(float) + np.random.default_rng(0).normal(0, 20, sharp.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(sharp).save(buf, format="JPEG", quality=5)
    blocky = np.asarray(Image.open(buf))
    dark = (sharp // 40).astype(np.uint8)
    s = {name: frame_scores([img]) for name, img in
         [("sharp", sharp), ("blurred", blurred), ("noisy", noisy), ("blocky", blocky), ("dark", dark)]}  # fmt: skip
    assert s["blurred"]["sharpness"] < s["sharp"]["sharpness"] / 4
    assert s["noisy"]["noise"] > s["sharp"]["noise"] + 5
    assert s["blocky"]["blockiness"] > s["sharp"]["blockiness"] + 0.1
    assert s["dark"]["clipped"] > 0.3 and s["dark"]["brightness"] < 0.1


def make_media(root, moving=True):
    (root / "v").mkdir(parents=True)
    frames = moving_scene(40, 128, 1)
    write_video(root / "v" / "moving.mp4", frames)
    write_video(root / "v" / "static.mp4", np.repeat(frames[:1], 40, axis=0))
    for i in range(3):
        Image.fromarray(photo(i, 128)).save(root / "v" / f"p{i}.png")


def test_scan_select_sharded_and_resumable(tmp_path):
    make_media(tmp_path)
    cfg = dict(segment_seconds=0.8, min_segment_frames=12)
    shards = [scan([tmp_path / "v"], tmp_path / "s.jsonl", ScanConfig(**cfg, shard_index=i, num_shards=2), tmp_path)
              for i in range(2)]  # fmt: skip
    per_shard = [{s.path for s in read_manifest(p, kept_only=False)} for p in shards]
    assert not (per_shard[0] & per_shard[1]) and len(per_shard[0] | per_shard[1]) == 5  # disjoint, complete
    before = shards[0].read_text()
    scan([tmp_path / "v"], tmp_path / "s.jsonl", ScanConfig(**cfg, shard_index=0, num_shards=2), tmp_path)
    assert shards[0].read_text() == before  # resumed: nothing scored twice
    lenient = Thresholds(min_sharpness=0, max_noise=1e9, max_blockiness=1e9, max_clipped=1, min_motion=0.2, exclude=("v/p2.png",))
    kept, total = select(shards, tmp_path / "m.jsonl", lenient)
    segs = read_manifest(tmp_path / "m.jsonl", kept_only=False)
    moving = [s for s in segs if s.path == "v/moving.mp4"]
    assert len(moving) == 1 and moving[0].keep and moving[0].frames == 40  # 2 segments of 20 merged
    static = [s for s in segs if s.path == "v/static.mp4"]
    assert static and not any(s.keep for s in static) and all("static" in s.reasons for s in static)
    assert [s.reasons for s in segs if s.path == "v/p2.png"] == [("held out",)]
    assert kept == 3 and total == len(segs)


def test_shard_from_launcher_environment(monkeypatch):
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    assert curate.shard_of(ScanConfig()) == (3, 8)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert curate.shard_of(ScanConfig()) == (1, 2)  # torchrun's variables win


def test_merge_keeps_gaps_and_drops_apart():
    a = Segment("x.mp4", "video", 0, 10, scores={"m": 1.0})
    b = Segment("x.mp4", "video", 10, 10, scores={"m": 3.0})
    c = Segment("x.mp4", "video", 30, 10, scores={"m": 1.0})
    merged = merge_consecutive([c, b, a])
    assert [(s.start, s.frames) for s in merged] == [(0, 20), (30, 10)] and merged[0].scores["m"] == 2.0


def test_data_cli(tmp_path):
    make_media(tmp_path)
    run = lambda *a: subprocess.run([sys.executable, "-m", "flashvsr", "data", *a], capture_output=True, text=True, cwd=REPO)  # noqa: E731
    done = run("scan", str(tmp_path / "v"), "--root", str(tmp_path), "-o", str(tmp_path / "s.jsonl"), "--segment-seconds", "0.8", "--quiet")
    assert done.returncode == 0, done.stderr
    done = run("select", str(tmp_path / "s.jsonl"), "-o", str(tmp_path / "m.jsonl"), "--min-sharpness", "0", "--min-motion", "0.2")
    assert done.returncode == 0 and "kept" in done.stdout
    assert all(json.loads(line)["path"].startswith("v/") for line in (tmp_path / "m.jsonl").read_text().splitlines())


def clip(frames=6, size=128):
    return torch.from_numpy(moving_scene(frames, size, 2)).permute(0, 3, 1, 2).float() / 255


def test_degradation_is_seeded_and_shaped():
    hr = clip()
    cfg = DegradationConfig()
    a, b, c = degrade(hr, cfg, 5), degrade(hr, cfg, 5), degrade(hr, cfg, 6)
    assert a.shape == (6, 3, 32, 32) and torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    bic = degrade(hr, DegradationConfig(mode="bicubic"), 0)
    assert bic.shape == (6, 3, 32, 32) and torch.equal(bic, degrade(hr, DegradationConfig(mode="bicubic"), 9))


def test_degradation_parameters_drift_slowly_per_frame():
    plan = draw_clip(DegradationConfig(drift=0.03), frames=20, seed=1)
    levels = np.array([p.noise_level for p in plan.round1])
    assert len(set(levels)) > 1  # drifts
    assert np.abs(np.diff(levels) / levels[:-1]).max() < 0.2  # slowly
    assert len({p.resize_mode for p in plan.round1}) == 1  # discrete choices are per clip


def test_jpeg_in_torch_matches_pillow():
    """The torch JPEG round trip (any device, per-frame quality) loses what Pillow's does."""
    import io

    from PIL import Image

    from flashvsr.data.degrade import jpeg

    frames = clip(3, 96)
    qualities = [20, 50, 90]
    ours = jpeg(frames, qualities)
    for frame, q, got in zip(frames, qualities, ours):
        buf = io.BytesIO()
        Image.fromarray((frame * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=q)
        ref = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
        psnr = lambda a, b: (-10 * torch.log10(((a - b) ** 2).mean())).item()  # noqa: E731
        assert psnr(got, ref) > 40  # the same image up to rounding
        assert abs(psnr(got, frame) - psnr(ref, frame)) < 0.3  # the same loss
    assert psnr(ours[2], frames[2]) > psnr(ours[0], frames[0]) + 1.5  # higher quality, less loss


def test_kernels_and_codec():
    for kind in ("iso", "aniso", "generalized_aniso", "plateau_iso"):
        k = KernelParams(kind, 11, 2.0, 1.0, 0.5, 1.5).kernel()
        assert k.shape == (11, 11) and abs(k.sum().item() - 1) < 1e-5
    assert abs(sinc_kernel(13, 1.5).sum().item() - 1) < 1e-5
    hr = clip(8, 64)
    out = video_codec(hr, "libx264", 20_000)
    assert out.shape == hr.shape and 0.01 < (out - hr).abs().mean() < 0.3
    noise = torch.rand(25, 3, 90, 144, generator=torch.Generator().manual_seed(0))
    soft = torch.nn.functional.avg_pool2d(noise, 3, 1, 1)  # an input whose encoding once varied from run to run
    runs = {hashlib.md5(video_codec(soft, "libx264", 43_485).numpy().tobytes()).hexdigest() for _ in range(10)}
    assert len(runs) == 1


@pytest.mark.parametrize("mode", ["bogus"])
def test_unknown_degradation_is_refused(mode):
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(clip(), DegradationConfig(mode=mode), 0)


def test_frame_store_serves_the_same_frames_to_every_reader(tmp_path):
    from flashvsr.data.media import SegmentCache

    make_media(tmp_path)
    direct = SegmentCache(tmp_path, max_short_side=96).get("v/moving.mp4", "video", 5, 20)
    stored = SegmentCache(tmp_path, max_short_side=96, frame_store=str(tmp_path / "store"))
    first = stored.get("v/moving.mp4", "video", 5, 20)
    assert first.shape == (20, 96, 96, 3) and np.array_equal(np.asarray(first), direct)
    assert len(list((tmp_path / "store").glob("*.npy"))) == 1
    again = SegmentCache(tmp_path, max_short_side=96, frame_store=str(tmp_path / "store")).get("v/moving.mp4", "video", 5, 20)
    assert isinstance(again, np.memmap) or again.base is not None  # mapped, not decoded again


def test_lq_can_be_left_to_the_training_device(tmp_path):
    """With ``lq_on_device``, every sample carries its HR clip and its degradation seed;
    ``finish_lq`` then makes exactly the LQ the CPU workers would have made, bicubic or
    RealBasicVSR alike."""
    from dataclasses import replace

    from flashvsr.data.datasets import ClipDataset, collate, finish_lq
    from flashvsr.data.degrade import is_plain_bicubic
    from flashvsr.train.config import DataConfig

    write_video(tmp_path / "a.mp4", moving_scene(30, 160, seed=1))
    seg = Segment(path="a.mp4", kind="video", frames=30, width=160, height=160)
    cfg = DataConfig(latent_frames=2, crop=128, degradation=DegradationConfig(bicubic_prob=0.5))
    cpu = ClipDataset([seg], tmp_path, cfg, seed=7)
    dev = ClipDataset([seg], tmp_path, replace(cfg, lq_on_device=True), seed=7)
    rng_a, rng_b = __import__("random").Random(1), __import__("random").Random(1)
    made = [cpu.sample(rng_a) for _ in range(8)]
    left = [dev.sample(rng_b) for _ in range(8)]
    assert all(s.lq_pending for s in left)
    plain = [is_plain_bicubic(cfg.degradation, s.lq_seed) for s in left]
    assert 0 < sum(plain) < 8  # both kinds are in the batch
    finished = finish_lq(collate(left), cfg.degradation)
    assert not finished["lq_pending"].any()
    for i, (a, b) in enumerate(zip(made, left)):
        assert torch.equal(a.hr, b.hr)
        torch.testing.assert_close(finished["lq"][i], a.lq, rtol=0, atol=1e-6)
    cfg_b = DegradationConfig(bicubic_prob=0.3)
    picks = [is_plain_bicubic(cfg_b, seed) for seed in range(400)]
    assert 0.2 < np.mean(picks) < 0.4
    assert all(is_plain_bicubic(DegradationConfig(mode="bicubic"), seed) for seed in range(5))


def test_softened_samples_blur_the_ground_truth_and_its_lq_alike(tmp_path):
    """``soften_prob``: the HR clip is blurred before its LQ is made, so the softer clip is
    both the target and the source of the input."""
    import random
    from dataclasses import replace

    from flashvsr.data.datasets import ClipDataset, lq_from_lr
    from flashvsr.train.config import DataConfig

    write_video(tmp_path / "a.mp4", moving_scene(30, 160, seed=2))
    seg = Segment(path="a.mp4", kind="video", frames=30, width=160, height=160)
    cfg = DataConfig(latent_frames=2, crop=128, hflip=False, degradation=DegradationConfig(mode="bicubic"))
    sharp = ClipDataset([seg], tmp_path, cfg, seed=3).sample(random.Random(5))
    soft_cfg = replace(cfg, soften_prob=1.0, soften_sigma=2.0)
    soft = ClipDataset([seg], tmp_path, soft_cfg, seed=3).sample(random.Random(5))
    detail = lambda x: x.diff(dim=-1).abs().mean().item()  # noqa: E731
    assert detail(soft.hr) < 0.9 * detail(sharp.hr)  # the same crop, blurred
    assert (soft.hr.mean() - sharp.hr.mean()).abs() < 0.01  # a blur keeps the brightness
    hr01 = (soft.hr.transpose(0, 1) + 1) / 2
    made = lq_from_lr(bicubic_downscale(hr01, 4), hr01.shape[-2:]).transpose(0, 1)
    torch.testing.assert_close(soft.lq[:, : made.shape[1]], made, rtol=0, atol=1e-6)
    never = replace(cfg, soften_prob=0.0)
    again = ClipDataset([seg], tmp_path, never, seed=3).sample(random.Random(5))
    assert torch.equal(again.hr, sharp.hr)


def test_still_samples_hold_one_frame_for_ground_truth_and_lq(tmp_path):
    """``still_prob``: a video sample becomes its first frame held for the whole clip, HR and
    LQ alike, so the only right output change is none; at 0 the sample stream is unchanged."""
    import random
    from dataclasses import replace

    from flashvsr.data.datasets import ClipDataset
    from flashvsr.train.config import DataConfig

    write_video(tmp_path / "a.mp4", moving_scene(30, 160, seed=4))
    seg = Segment(path="a.mp4", kind="video", frames=30, width=160, height=160)
    cfg = DataConfig(latent_frames=2, crop=128, degradation=DegradationConfig(mode="bicubic"))
    moving = ClipDataset([seg], tmp_path, cfg, seed=3).sample(random.Random(5))
    assert (moving.hr[:, 1:] - moving.hr[:, :1]).abs().amax() > 0.05  # the scene moves
    still = ClipDataset([seg], tmp_path, replace(cfg, still_prob=1.0), seed=3).sample(random.Random(5))
    assert still.hr.shape == moving.hr.shape and still.lq.shape == moving.lq.shape
    assert torch.equal(still.hr, still.hr[:, :1].expand_as(still.hr))
    assert torch.equal(still.lq, still.lq[:, :1].expand_as(still.lq))
    assert (still.hr - still.hr.mean()).abs().amax() > 0.05  # a real frame, not a flat one
    again = ClipDataset([seg], tmp_path, replace(cfg, still_prob=0.0), seed=3).sample(random.Random(5))
    assert torch.equal(again.hr, moving.hr)


def test_panned_samples_move_one_frame_at_a_known_steady_speed(tmp_path):
    """``pan_prob``: a video sample becomes one frame seen through a window moving a whole number
    of pixels per frame; every frame is the first one shifted by t·(vy, vx), with no new detail."""
    import random
    from dataclasses import replace

    from flashvsr.data.datasets import ClipDataset
    from flashvsr.train.config import DataConfig

    write_video(tmp_path / "a.mp4", moving_scene(30, 160, seed=4))
    seg = Segment(path="a.mp4", kind="video", frames=30, width=160, height=160)
    cfg = DataConfig(latent_frames=2, crop=128, hflip=False, pan_prob=1.0, pan_speed=3,
                     degradation=DegradationConfig(mode="bicubic"))  # fmt: skip
    speeds = set()
    for seed in range(6):
        hr = ClipDataset([seg], tmp_path, cfg, seed=3).sample(random.Random(seed)).hr  # (3, T, c, c)
        c = hr.shape[-1]

        def shifted_by(t: int, dy: int, dx: int) -> bool:  # frame t == frame 0 moved by t·(dy, dx)
            y, x = t * dy, t * dx
            now = hr[:, t, max(0, -y) : c - max(0, y), max(0, -x) : c - max(0, x)]
            then = hr[:, 0, max(0, y) : c + min(0, y), max(0, x) : c + min(0, x)]
            return torch.equal(now, then)

        found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4) if shifted_by(1, dy, dx)]
        assert len(found) == 1, found
        assert all(shifted_by(t, *found[0]) for t in range(2, hr.shape[1]))
        speeds.add(found[0])
    assert len(speeds) > 1 and any(v != (0, 0) for v in speeds)
    moving = ClipDataset([seg], tmp_path, replace(cfg, pan_prob=0.0), seed=3).sample(random.Random(5))
    unset = ClipDataset([seg], tmp_path, DataConfig(latent_frames=2, crop=128, hflip=False,
                                                    degradation=cfg.degradation), seed=3).sample(random.Random(5))  # fmt: skip
    assert torch.equal(moving.hr, unset.hr)  # pan_prob 0 draws nothing: the sample stream is unchanged
