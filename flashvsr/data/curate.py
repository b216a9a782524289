"""Data curation: find media, cut videos into segments, score them, keep the good ones.

Two steps, so thresholds can change without scoring again:

1. ``scan``: every video (and image-sequence folder) is cut into segments of
   ``segment_seconds``; each segment is scored on 4 evenly spaced frames, each as the full
   frame plus its 4 corner crops (as the paper does): sharpness, noise, blockiness, exposure
   (classical measures) and motion (optical-flow magnitude, OpenCV), plus any learned scorer
   the user plugs in. Photos are scored the same way without motion. Work is split by index
   across processes or machines (``shard_index`` of ``num_shards``, read from torchrun's or
   SLURM's environment when not given) and each shard file is appended item by item, so an
   interrupted scan resumes where it stopped.
2. ``select``: thresholds decide which segments to keep; consecutive kept segments of one
   video merge into one; the result is the training manifest.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .manifest import Segment, iter_jsonl, write_manifest
from .media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key, read_image, sequence_files

ANALYSIS_SIDE = 480  # frames are scored at this long side: scores do not depend on resolution
SAMPLES_PER_SEGMENT = 4
BLOCK = 8  # codec block size for the blockiness measure
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)
NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)

Scorer = Callable[[list[np.ndarray]], dict[str, float]]  # frames (H, W, 3) uint8 → named scores


@dataclass(frozen=True)
class ScanConfig:
    segment_seconds: float = 8.0
    min_segment_frames: int = 25  # a shorter tail is dropped
    sequence_fps: float = 25.0  # image-sequence folders have no frame rate of their own
    motion: bool = True
    shard_index: int | None = None
    num_shards: int | None = None


@dataclass(frozen=True)
class Thresholds:
    min_sharpness: float = 50.0  # Laplacian variance at the analysis size (0…255 scale)
    max_noise: float = 6.0  # estimated Gaussian noise sigma (0…255)
    max_blockiness: float = 1.2  # gradient ratio across 8×8 block edges (9 kbps H.263: 1.29)
    max_clipped: float = 0.25  # share of pixels at 0 or 255
    min_motion: float = 0.25  # mean flow, pixels per frame at the analysis size
    max_motion: float = 40.0
    learned: tuple[tuple[str, float], ...] = ()  # (score name, minimum) for plugged-in scorers
    exclude: tuple[str, ...] = ()  # path patterns held out (evaluation clips), fnmatch syntax


# --------------------------------------------------------------------------------------------
# Classical measures on one grayscale frame (float32, 0…255)


def _conv(gray: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    out = np.zeros((h - 2, w - 2), np.float32)
    for dy in range(3):
        for dx in range(3):
            if kernel[dy, dx]:
                out += kernel[dy, dx] * gray[dy : dy + h - 2, dx : dx + w - 2]
    return out


def sharpness(gray: np.ndarray) -> float:
    return float(_conv(gray, LAPLACIAN).var())


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkær's fast noise estimate: the Laplacian-difference response of flat noise."""
    h, w = gray.shape
    return float(np.sqrt(np.pi / 2) * np.abs(_conv(gray, NOISE_KERNEL)).sum() / (6 * (w - 2) * (h - 2)))


def blockiness(gray: np.ndarray) -> float:
    """Mean horizontal+vertical gradient on 8-pixel block boundaries over elsewhere."""
    dx = np.abs(np.diff(gray, axis=1))
    dy = np.abs(np.diff(gray, axis=0))
    edge_x = (np.arange(dx.shape[1]) % BLOCK) == BLOCK - 1
    edge_y = (np.arange(dy.shape[0]) % BLOCK) == BLOCK - 1
    on = dx[:, edge_x].mean() + dy[edge_y].mean()
    off = dx[:, ~edge_x].mean() + dy[~edge_y].mean()
    return float(on / max(off, 1e-6))


def exposure(gray: np.ndarray) -> tuple[float, float]:
    """(share of clipped pixels, mean brightness in 0…1)."""
    return float(((gray <= 2) | (gray >= 253)).mean()), float(gray.mean() / 255)


def to_analysis_gray(frame: np.ndarray) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(frame).convert("L")
    scale = ANALYSIS_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(16, round(im.width * scale)), max(16, round(im.height * scale))), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32)


def views(gray: np.ndarray) -> list[np.ndarray]:
    """The full frame and its four corner quarters."""
    h, w = gray.shape
    return [gray, gray[: h // 2, : w // 2], gray[: h // 2, w // 2 :], gray[h // 2 :, : w // 2], gray[h // 2 :, w // 2 :]]


def frame_scores(frames: list[np.ndarray]) -> dict[str, float]:
    rows = []
    for frame in frames:
        for v in views(to_analysis_gray(frame)):
            clipped, bright = exposure(v)
            rows.append((sharpness(v), noise_sigma(v), blockiness(v), clipped, bright))
    s, n, b, c, e = np.mean(np.array(rows), axis=0)
    return {"sharpness": float(s), "noise": float(n), "blockiness": float(b), "clipped": float(c), "brightness": float(e)}


def motion(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean optical-flow magnitude (Farnebäck, OpenCV) over frame pairs, pixels per frame."""
    import cv2  # the motion score needs opencv-python-headless

    mags = []
    for a, b in pairs:
        ga, gb = to_analysis_gray(a).astype(np.uint8), to_analysis_gray(b).astype(np.uint8)
        flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.linalg.norm(flow, axis=-1).mean()))
    return float(np.mean(mags))


# --------------------------------------------------------------------------------------------
# Finding media and cutting segments


@dataclass(frozen=True)
class MediaItem:
    path: Path
    kind: str  # video, sequence, image


def find_media(roots: Iterable[Path], sequences: Iterable[Path] = ()) -> list[MediaItem]:
    """Videos and photos under ``roots`` (recursively), plus the given image-sequence folders."""
    seq = {Path(p).resolve() for p in sequences}
    items = [MediaItem(p, "sequence") for p in sorted(seq)]
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("*"), key=lambda p: natural_key(str(p)))
        for f in files:
            if any(parent in seq for parent in f.resolve().parents):
                continue
            ext = f.suffix.lower()
            if ext in VIDEO_EXTENSIONS:
                items.append(MediaItem(f, "video"))
            elif ext in IMAGE_EXTENSIONS:
                items.append(MediaItem(f, "image"))
    return items


def _video_frames(path: Path) -> tuple[Iterator[np.ndarray], float, int]:
    import av

    container = av.open(str(path))
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or Fraction(25))

    def frames():
        with container:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    return frames(), fps, stream.frames


def segment_item(item: MediaItem, cfg: ScanConfig, root: Path, scorers: dict[str, Scorer]) -> list[Segment]:
    rel = str(item.path.resolve().relative_to(root.resolve())) if root else str(item.path)
    if item.kind == "image":
        frame = read_image(item.path)
        scores = {**frame_scores([frame]), **_learned(scorers, [frame])}
        return [Segment(rel, "image", 0, 1, frame.shape[1], frame.shape[0], 0.0, scores)]
    if item.kind == "sequence":
        files = sequence_files(item.path)
        frames, fps, total = (read_image(f) for f in files), cfg.sequence_fps, len(files)
    else:
        frames, fps, total = _video_frames(item.path)
    return _score_segments(rel, item.kind, frames, fps, cfg, scorers)


def _score_segments(rel, kind, frames, fps, cfg: ScanConfig, scorers) -> list[Segment]:
    """Walk the frames once, keeping only the sampled ones (and their successors for flow)."""
    length = max(cfg.min_segment_frames, round(cfg.segment_seconds * fps))
    picks = _sample_offsets(length)
    wanted = set(picks) | {p + 1 for p in picks}
    segments, buffer, size, start, seen = [], {}, (0, 0), 0, 0
    for i, frame in enumerate(frames):
        seen, size = i + 1, (frame.shape[1], frame.shape[0])
        if i - start in wanted:
            buffer[i - start] = frame
        if i - start == length - 1:
            segments.append(_segment(rel, kind, start, length, size, fps, buffer, picks, cfg, scorers))
            start, buffer = i + 1, {}
    tail = seen - start
    if tail >= cfg.min_segment_frames:
        tail_picks = [p for p in _sample_offsets(tail) if p in buffer]
        segments.append(_segment(rel, kind, start, tail, size, fps, buffer, tail_picks, cfg, scorers))
    return segments


def _sample_offsets(length: int) -> list[int]:
    return sorted({round(x) for x in np.linspace(0, length - 2, SAMPLES_PER_SEGMENT)})


def _segment(rel, kind, start, length, size, fps, buffer, picks, cfg, scorers) -> Segment:
    sampled = [buffer[p] for p in picks if p in buffer]
    scores = {**frame_scores(sampled), **_learned(scorers, sampled)}
    if cfg.motion:
        pairs = [(buffer[p], buffer[p + 1]) for p in picks if p in buffer and p + 1 in buffer]
        scores["motion"] = motion(pairs) if pairs else 0.0
    return Segment(rel, kind, start, length, size[0], size[1], fps, scores)


def _learned(scorers: dict[str, Scorer], frames: list[np.ndarray]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, scorer in scorers.items():
        out.update({f"{name}.{k}": float(v) for k, v in scorer(frames).items()})
    return out


def load_scorer(spec: str) -> tuple[str, Scorer]:
    """``module:factory`` or ``module:factory=WEIGHTS``: an installed Python package's factory,
    called with the weights path, returns a scorer. Nothing is executed from data files."""
    target, _, weights = spec.partition("=")
    module, _, factory = target.partition(":")
    if not module or not factory:
        raise ValueError(f"scorer {spec!r}: expected module:factory[=weights]")
    make = getattr(importlib.import_module(module), factory)
    return factory, make(weights) if weights else make()


# --------------------------------------------------------------------------------------------
# Sharded, resumable scanning


def shard_of(cfg: ScanConfig) -> tuple[int, int]:
    """(index, count) from the config, else torchrun's or SLURM's environment, else (0, 1)."""
    if cfg.shard_index is not None and cfg.num_shards is not None:
        index, count = cfg.shard_index, cfg.num_shards
    else:
        env = os.environ
        index = int(env.get("RANK", env.get("SLURM_PROCID", "0")))
        count = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", "1")))
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is not in 0…{count - 1}")
    return index, count


def shard_path(out: Path, index: int, count: int) -> Path:
    return out if count == 1 else out.with_name(f"{out.stem}.shard-{index:05d}-of-{count:05d}{out.suffix}")


def scan(
    roots: list[Path], out: Path, cfg: ScanConfig, data_root: Path, sequences: Iterable[Path] = (),
    scorers: dict[str, Scorer] | None = None, progress: Callable[[str], None] = lambda _: None,
) -> Path:  # fmt: skip
    """Score this shard's items into its JSONL file, skipping items already there."""
    index, count = shard_of(cfg)
    path = shard_path(out, index, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {s.path for s in iter_jsonl(path)}
    items = [it for i, it in enumerate(find_media(roots, sequences)) if i % count == index]
    with open(path, "a") as f:
        for item in items:
            rel = str(item.path.resolve().relative_to(data_root.resolve()))
            if rel in done:
                continue
            for seg in segment_item(item, cfg, data_root, scorers or {}):
                f.write(seg.to_json() + "\n")
            f.flush()  # one item at a time: an interrupted scan loses at most one item
            progress(rel)
    return path


def judge(seg: Segment, t: Thresholds) -> Segment:
    s, reasons = seg.scores, []
    if any(fnmatch.fnmatch(seg.path, pattern) for pattern in t.exclude):
        reasons.append("held out")
    if s.get("sharpness", np.inf) < t.min_sharpness:
        reasons.append("blurry")
    if s.get("noise", 0) > t.max_noise:
        reasons.append("noisy")
    if s.get("blockiness", 0) > t.max_blockiness:
        reasons.append("blocky")
    if s.get("clipped", 0) > t.max_clipped:
        reasons.append("badly exposed")
    if seg.kind != "image" and "motion" in s:
        if s["motion"] < t.min_motion:
            reasons.append("static")
        elif s["motion"] > t.max_motion:
            reasons.append("too fast")
    reasons += [f"low {name}" for name, low in t.learned if s.get(name, np.inf) < low]
    return replace(seg, keep=not reasons, reasons=tuple(reasons))


def merge_consecutive(segments: list[Segment]) -> list[Segment]:
    """Join kept segments that follow each other in the same video (scores: frame-weighted)."""
    out: list[Segment] = []
    for seg in sorted(segments, key=lambda s: (s.path, s.start)):
        prev = out[-1] if out else None
        if prev and prev.keep and seg.keep and seg.kind != "image" and prev.path == seg.path and prev.start + prev.frames == seg.start:
            total = prev.frames + seg.frames
            scores = {k: (prev.scores[k] * prev.frames + seg.scores.get(k, prev.scores[k]) * seg.frames) / total for k in prev.scores}
            out[-1] = replace(prev, frames=total, scores=scores)
        else:
            out.append(seg)
    return out


def select(shards: list[Path], out: Path, thresholds: Thresholds) -> tuple[int, int]:
    """Judge and merge every scored segment into the final manifest; (kept, total)."""
    segments = [judge(s, thresholds) for p in shards for s in iter_jsonl(p)]
    merged = merge_consecutive(segments)
    write_manifest(out, merged)
    return sum(s.keep for s in merged), len(merged)
