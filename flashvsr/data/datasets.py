"""Training samples: HR clips cut from the manifest, LQ clips made from them on the fly.

A sample with ``T`` latent frames holds (SPEC §5 indexing, which the released weights use):
- ``hr``: 4T−3 HR frames — what the VAE encodes to T latents and the decoders reproduce;
- ``lq``: 4T+1 LQ frames — the degraded, bicubic-upsampled input: the LR projection reads
  frame 0 as its priming clip and clip j = frames [4j+1, 4j+5) for latent j, four frames
  ahead of what latent j decodes to.
Photos are 1-latent videos: one HR frame and its LQ repeated 5 times.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..config import VAE_TEMPORAL_FACTOR
from ..pipeline import bicubic_resize_u8
from ..train.config import DataConfig
from .degrade import DegradationConfig, anisotropic_kernel, blur, degrade
from .manifest import Segment
from .media import SegmentCache


def hr_frames(latent_frames: int) -> int:
    return VAE_TEMPORAL_FACTOR * (latent_frames - 1) + 1


def lq_frames(latent_frames: int) -> int:
    return VAE_TEMPORAL_FACTOR * latent_frames + 1


@dataclass
class Sample:
    hr: torch.Tensor  # (3, 4T−3, H, W) in [-1, 1]
    lq: torch.Tensor  # (3, 4T+1, H, W) in [-1, 1]; while ``lq_pending``, the HR source of the LQ
    is_image: bool
    lq_seed: int | None = None  # set when the LQ is left to the training device (DataConfig.lq_on_device):
    #                             its degradation seed, or PLAIN_BICUBIC (bicubic ×scale whatever the config)

    @property
    def lq_pending(self) -> bool:
        return self.lq_seed is not None


PLAIN_BICUBIC = -1


def make_lq(hr01: torch.Tensor, degradation: DegradationConfig, seed: int) -> torch.Tensor:
    """HR (T, 3, H, W) in [0, 1] → degraded LR → PIL-exact bicubic back to H×W, in [-1, 1]."""
    return lq_from_lr(degrade(hr01, degradation, seed), hr01.shape[-2:])


def lq_from_lr(lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """LR frames in [0, 1] → 8-bit → PIL-exact bicubic to ``size`` (what inference does), in [-1, 1]."""
    up = bicubic_resize_u8((lr.clamp(0, 1) * 255).round(), size[0], size[1])
    return up / 255 * 2 - 1


def finish_lq(batch: dict[str, torch.Tensor], degradation: DegradationConfig) -> dict[str, torch.Tensor]:
    """Make the LQ of a batch's pending samples where the batch now is — the very LQ a CPU
    worker would have made from the same seed: on a GPU this lets a fast stage outrun the
    CPU-side degradation."""
    pending = batch.get("lq_pending")
    if pending is None or not bool(pending.any()):
        return batch
    lq = batch["lq"].clone()
    seeds = batch["lq_seed"].tolist()
    for i in pending.nonzero().flatten().tolist():
        hr01 = (lq[i].transpose(0, 1) + 1) / 2
        cfg = replace(degradation, mode="bicubic") if seeds[i] == PLAIN_BICUBIC else degradation
        lq[i] = make_lq(hr01, cfg, seeds[i]).transpose(0, 1)
    return {**batch, "lq": lq, "lq_pending": torch.zeros_like(pending)}


class ClipDataset(torch.utils.data.IterableDataset):
    """An endless stream of random samples, different for every rank and worker."""

    def __init__(
        self,
        segments: list[Segment],
        root: str | Path,
        cfg: DataConfig,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        hr_only: bool = False,
    ):
        super().__init__()
        self.cfg = cfg
        self.root = Path(root)
        self.seed, self.rank, self.world = seed, rank, world
        self.hr_only = hr_only  # VAE training needs no LQ
        need = (lq_frames(cfg.latent_frames) - 1) * min(cfg.frame_step) + 1
        big_enough = [s for s in segments if _short_side(s, cfg.max_short_side) >= cfg.crop]
        self.videos = [s for s in big_enough if s.kind != "image" and s.frames >= need]
        self.images = [s for s in big_enough if s.kind == "image"]
        if not self.videos and not (self.images and cfg.image_prob > 0):
            raise ValueError(
                f"no usable segments: need clips of ≥ {need} frames (or photos) of at least {cfg.crop}px"
            )
        self.cache: SegmentCache | None = None

    def __iter__(self) -> Iterator[Sample]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        rng = random.Random((self.seed * 1_000_003 + self.rank) * 997 + worker)
        self.cache = SegmentCache(self.root, self.cfg.max_short_side, frame_store=self.cfg.frame_store)
        while True:
            yield self.sample(rng)

    def sample(self, rng: random.Random) -> Sample:
        self.cache = self.cache or SegmentCache(self.root, self.cfg.max_short_side, frame_store=self.cfg.frame_store)
        if self.images and (not self.videos or rng.random() < self.cfg.image_prob):
            return self.sample_image(rng)
        return self.sample_video(rng)

    def sample_video(self, rng: random.Random) -> Sample:
        cfg = self.cfg
        seg = rng.choices(self.videos, weights=[s.frames for s in self.videos])[0]
        n = lq_frames(cfg.latent_frames)
        steps = [s for s in cfg.frame_step if (n - 1) * s + 1 <= seg.frames] or [1]
        step = rng.choice(steps)
        span = (n - 1) * step + 1
        frames = self.cache.get(seg.path, seg.kind, seg.start, seg.frames)
        first = rng.randrange(0, seg.frames - span + 1)
        if self._drawn(self.cfg.still_prob, rng):  # one frame held still: any output change is flicker
            clip = self._crop(frames[first : first + 1], rng).expand(n, -1, -1, -1)
        elif self._drawn(self.cfg.pan_prob, rng):
            clip = self._pan(frames[first], n, rng)
        else:
            clip = self._crop(frames[first : first + span : step], rng)
        clip = self._soften(clip, rng).contiguous()
        lq, seed = self._lq(clip, rng)
        hr = clip[: hr_frames(cfg.latent_frames)] * 2 - 1
        return Sample(hr.transpose(0, 1), lq.transpose(0, 1), is_image=False, lq_seed=seed)

    def sample_image(self, rng: random.Random) -> Sample:
        seg = rng.choice(self.images)
        image = self._soften(self._crop(self.cache.get(seg.path, seg.kind, 0, 1), rng), rng)
        lq, seed = self._lq(image, rng)
        lq = lq.expand(lq_frames(1), -1, -1, -1)
        return Sample((image * 2 - 1).transpose(0, 1), lq.transpose(0, 1), is_image=True, lq_seed=seed)

    def _drawn(self, prob: float, rng: random.Random) -> bool:
        """True with chance ``prob`` for a sample with an LQ clip (still and panned clips). No
        draw at all when ``prob`` is 0, so runs without the option see the same samples as before."""
        return prob > 0 and not self.hr_only and rng.random() < prob

    def _pan(self, frame: np.ndarray, n: int, rng: random.Random) -> torch.Tensor:
        """``n`` crops of one (H, W, 3) frame along a straight path, a whole number of pixels per
        frame in each direction: motion whose every output change is known, with no new detail."""
        c, (h, w) = self.cfg.crop, frame.shape[:2]
        vy, vx = (_fitting_speed(side - c, n, self.cfg.pan_speed, rng) for side in (h, w))
        y0, x0 = (_path_start(side - c, n, v, rng) for side, v in ((h, vy), (w, vx)))
        path = np.stack([frame[y0 + t * vy : y0 + t * vy + c, x0 + t * vx : x0 + t * vx + c] for t in range(n)])
        return self._as_clip(path, rng)

    def _soften(self, clip: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """With ``soften_prob``, the clip blurred by a random Gaussian: softer ground truth,
        as in footage that was never sharp (the same σ for all its frames)."""
        if self.hr_only or rng.random() >= self.cfg.soften_prob:
            return clip
        sigma = rng.uniform(0.0, self.cfg.soften_sigma)
        size = 2 * math.ceil(3 * sigma) + 1
        return blur(clip, anisotropic_kernel(size, sigma, sigma, 0.0, 1.0, "gaussian")) if size > 1 else clip

    def _lq(self, clip: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, int | None]:
        """The LQ clip in [-1, 1] (the clip itself for VAE training) and None, or — with
        ``lq_on_device`` — the HR clip in [-1, 1] and the seed its LQ is to be made with."""
        if self.hr_only:
            return clip, None
        seed = rng.randrange(2**31)
        if self.cfg.lq_on_device:
            return clip * 2 - 1, seed
        return make_lq(clip, self.cfg.degradation, seed), None

    def _crop(self, frames: np.ndarray, rng: random.Random) -> torch.Tensor:
        """Random crop (and flip) of (T, H, W, 3) uint8 → (T, 3, c, c) float in [0, 1]."""
        c = self.cfg.crop
        _, h, w, _ = frames.shape
        y, x = rng.randrange(0, h - c + 1), rng.randrange(0, w - c + 1)
        return self._as_clip(frames[:, y : y + c, x : x + c], rng)

    def _as_clip(self, frames: np.ndarray, rng: random.Random) -> torch.Tensor:
        """(T, c, c, 3) uint8 → (T, 3, c, c) float in [0, 1], flipped at random with ``hflip``."""
        out = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
        if self.cfg.hflip and rng.random() < 0.5:
            out = out.flip(-1)
        return out


def _fitting_speed(room: int, n: int, most: int, rng: random.Random) -> int:
    """A speed in [−most, most] whose path of ``n`` frames fits in ``room`` spare pixels."""
    most = min(most, room // max(n - 1, 1))
    return rng.randint(-most, most)


def _path_start(room: int, n: int, speed: int, rng: random.Random) -> int:
    travel = abs(speed) * (n - 1)
    start = rng.randrange(0, room - travel + 1)
    return start + travel if speed < 0 else start


def _short_side(seg: Segment, cap: int) -> int:
    short = min(seg.width, seg.height)
    return min(short, cap) if cap > 0 else short


def collate(samples: list[Sample]) -> dict[str, torch.Tensor]:
    """Stack samples of one shape: videos with videos, photos with photos."""
    return {
        "hr": torch.stack([s.hr for s in samples]),
        "lq": torch.stack([s.lq for s in samples]),
        "is_image": torch.tensor([s.is_image for s in samples]),
        "lq_pending": torch.tensor([s.lq_pending for s in samples]),
        "lq_seed": torch.tensor([s.lq_seed if s.lq_pending else 0 for s in samples], dtype=torch.int64),
    }


def held_out_batch(clips: tuple[str, ...], crop: tuple[int, int], latent_frames: int, scale: int) -> dict[str, torch.Tensor]:
    """Centre crops of the first 4T+1 frames of each held-out clip, as one batch whose LQ is
    left pending (plain bicubic ×scale, made on the training device like any pending sample)."""
    from ..evaluation import load_ground_truth

    n = lq_frames(latent_frames)
    samples = []
    for clip in clips:
        gt = load_ground_truth(Path(clip), n, scale, crop)
        if gt.shape[0] < n or gt.shape[1:3] != tuple(crop):
            raise ValueError(f"held-out clip {clip}: need {n} frames of at least {crop[0]}×{crop[1]}, got {gt.shape[:3]}")
        x = torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 255 * 2 - 1
        hr = x[: hr_frames(latent_frames)].transpose(0, 1)
        samples.append(Sample(hr, x.transpose(0, 1), is_image=False, lq_seed=PLAIN_BICUBIC))
    return collate(samples)


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)  # workers are processes: threads inside them only oversubscribe cores


def loader(dataset: ClipDataset, batch_size: int, workers: int) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of same-kind samples (a batch never mixes photos and clips)."""
    dl = torch.utils.data.DataLoader(
        dataset, batch_size=None, num_workers=workers, persistent_workers=workers > 0, worker_init_fn=_one_thread
    )
    pending: dict[bool, list[Sample]] = {True: [], False: []}
    for sample in dl:
        group = pending[sample.is_image]
        group.append(sample)
        if len(group) == batch_size:
            yield collate(group)
            group.clear()


def resize_frames(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, T, H, W) → (B, 3, T, size, size) bilinear, for validation thumbnails."""
    b, c, t, h, w = x.shape
    y = F.interpolate(x.transpose(1, 2).flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False)
    return y.unflatten(0, (b, t)).transpose(1, 2)
