"""``flashvsr eval``: measure upscalers on ground-truth videos and photos.

For every ground-truth clip: make its LR version with a named degradation (bicubic ×scale,
or the RealBasicVSR pipeline with a seed), upscale it with each method (a model folder, or
the bicubic / Lanczos baselines), and measure against the ground truth:

- PSNR and SSIM on the Y channel (BT.601, as super-resolution papers report) and on RGB,
  with ``scale`` pixels shaved from each border;
- temporal error: the mean absolute difference between each output frame and the previous
  output frame warped to it with the ground truth's optical flow (OpenCV Farnebäck), where
  forward and backward flow agree — flicker and swimming raise it, and so does real detail
  that the flow does not follow exactly (the ground truth's own is not zero);
- temporal change error: the same frame-to-frame change compared with the ground truth's own
  change, mean absolute difference — zero for the ground truth, raised by flicker the truth
  does not have and by changes (detail, motion) the output lacks;
- throughput in frames per second (on the device the method ran on).

Results: ``results.md`` and ``results.csv`` (one row per clip and method, plus means) and
side-by-side crops ``crops/<clip>.png`` (LR | methods… | ground truth).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from .data.degrade import DegradationConfig, bicubic_downscale, degrade
from .data.media import IMAGE_EXTENSIONS, read_image, read_video, sequence_files
from .pipeline import bicubic_resize_u8

BASELINES = ("bicubic", "lanczos")
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
CROP_SIDE = 160  # side of the comparison crops, in ground-truth pixels
FLOW_AGREEMENT = 1.0  # pixels: forward-backward flow mismatch above this counts as occluded


@dataclass(frozen=True)
class EvalConfig:
    scale: int = 4
    degradation: str = "bicubic"  # "bicubic" or "realbasicvsr"
    seed: int = 0
    max_frames: int = 33  # per clip (0: all)
    device: str = "cpu"
    dtype: str = "float32"
    color_fix: str = "adain"
    stabilize: str = "auto"  # the models' stabilizer: as each folder recommends, "on" or "off"
    linears: str = "model"  # "fp8": measure what the lossy FP8 linears cost
    crop: tuple[int, int] | None = None  # (height, width) of a centred ground-truth crop; None: whole frames


@dataclass
class Row:
    clip: str
    method: str
    frames: int
    psnr_y: float
    psnr_rgb: float
    ssim_y: float
    ssim_rgb: float
    temporal_error: float
    temporal_change_error: float
    fps: float
    device: str


@dataclass
class Report:
    config: EvalConfig
    rows: list[Row] = field(default_factory=list)

    def means(self) -> list[Row]:
        out = []
        for method in dict.fromkeys(r.method for r in self.rows):
            rs = [r for r in self.rows if r.method == method]
            avg = lambda k: float(np.mean([getattr(r, k) for r in rs]))  # noqa: E731
            out.append(Row("mean", method, sum(r.frames for r in rs), avg("psnr_y"), avg("psnr_rgb"), avg("ssim_y"),
                           avg("ssim_rgb"), avg("temporal_error"), avg("temporal_change_error"), avg("fps"),
                           rs[0].device))  # fmt: skip
        return out

    def markdown(self) -> str:
        c = self.config
        head = (f"Degradation: {c.degradation} ×{c.scale} (seed {c.seed}); up to {c.max_frames or 'all'} frames per clip; "
                f"PSNR/SSIM with {c.scale}-pixel borders shaved; temporal error ×255, lower is steadier; temporal "
                f"change error ×255: frame-to-frame change against the ground truth's, lower is truer.\n\n")  # fmt: skip
        lines = ["| clip | method | frames | PSNR-Y | PSNR-RGB | SSIM-Y | SSIM-RGB | temporal err. | change err. | fps (device) |",
                 "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in self.rows + self.means():
            lines.append(f"| {r.clip} | {r.method} | {r.frames} | {r.psnr_y:.2f} | {r.psnr_rgb:.2f} | {r.ssim_y:.4f} | "
                         f"{r.ssim_rgb:.4f} | {r.temporal_error:.3f} | {r.temporal_change_error:.3f} | "
                         f"{r.fps:.2f} ({r.device}) |")  # fmt: skip
        return head + "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.md").write_text(self.markdown())
        with open(folder / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(self.rows[0])))
            writer.writeheader()
            for r in self.rows + self.means():
                writer.writerow(asdict(r))


# --------------------------------------------------------------------------------------------
# Metrics


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) RGB 0…255 → (…, 1, H, W) BT.601 luma on the 16…235 scale."""
    r, g, b = x.unbind(-3)
    return (16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).unsqueeze(-3)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.double() - b.double()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255**2 / mse)


def video_psnr_y(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR-Y of two model-layout videos (1, 3, T, H, W) in [−1, 1] (benchmarks, training figures)."""
    to255 = lambda x: ((x.float().clamp(-1, 1) + 1) * 127.5)[0].transpose(0, 1).cpu()  # noqa: E731  (T, 3, H, W)
    return psnr(rgb_to_y(to255(a)), rgb_to_y(to255(b)))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of (N, C, H, W) images (0…255), Gaussian window 11, σ 1.5, per channel."""
    a, b = a.double(), b.double()
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_WINDOW // 2
    g = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    c = a.shape[1]
    rows, cols = g.view(1, 1, 1, -1).expand(c, 1, 1, -1), g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    blur = lambda x: F.conv2d(F.conv2d(x, rows, groups=c), cols, groups=c)  # the Gaussian is separable  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2))
    return s.mean().item()


def temporal_errors(out: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(temporal error, temporal change error), 0…255, over pixels where the ground truth's
    forward and backward flows agree: the mean |c_t| and mean |c_t − g_t|, where
    c_t = out_t − warp(out_{t−1}) and g_t the same for the ground truth; 0 for a single frame."""
    import cv2

    if len(out) < 2:
        return 0.0, 0.0
    steady, change = [], []
    h, w = gt.shape[1:3]
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).astype(np.float32)

    def frame_change(frames: np.ndarray, t: int, where: np.ndarray) -> np.ndarray:
        warped = cv2.remap(frames[t - 1], where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return frames[t].astype(np.float32) - warped.astype(np.float32)

    for t in range(1, len(out)):
        g0, g1 = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (gt[t - 1], gt[t]))
        back = cv2.calcOpticalFlowFarneback(g1, g0, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # t → t−1
        fwd = cv2.calcOpticalFlowFarneback(g0, g1, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        where = grid + back
        fwd_there = cv2.remap(fwd, where[..., 0], where[..., 1], cv2.INTER_LINEAR)
        valid = np.linalg.norm(back + fwd_there, axis=-1) < FLOW_AGREEMENT
        ours = frame_change(out, t, where)
        truth = frame_change(gt, t, where)
        masked_mean = lambda d: float(np.abs(d).mean(-1)[valid].mean()) if valid.any() else 0.0  # noqa: E731
        steady.append(masked_mean(ours))
        change.append(masked_mean(ours - truth))
    return float(np.mean(steady)), float(np.mean(change))


def frame_metrics(sr: np.ndarray, gt: np.ndarray, shave: int) -> dict[str, float]:
    to_t = lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).double()  # noqa: E731
    a, b = to_t(sr), to_t(gt)
    if shave:
        a, b = a[..., shave:-shave, shave:-shave], b[..., shave:-shave, shave:-shave]
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    return {"psnr_y": psnr(ya, yb), "psnr_rgb": psnr(a, b), "ssim_y": ssim(ya, yb), "ssim_rgb": ssim(a, b)}


# --------------------------------------------------------------------------------------------
# Inputs and methods


def find_clips(paths: list[Path], sequences: list[Path] = ()) -> list[Path]:
    """Ground-truth clips: each video or photo named or found (recursively) in a named folder,
    plus each image-sequence folder in ``sequences`` as one clip."""
    from .data.curate import find_media

    return [item.path for item in find_media(paths, sequences)]


def load_ground_truth(path: Path, max_frames: int, scale: int, crop: tuple[int, int] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8: the centred ``crop`` (height, width) if given, cut to a multiple of ``scale``."""
    if path.is_dir():
        files = sequence_files(path)[: max_frames or None]
        frames = np.stack([read_image(f) for f in files])
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        frames = read_image(path)[None]
    else:
        frames = read_video(path, 0, max_frames or None)
    h, w = frames.shape[1:3]
    ch, cw = (min(crop[0], h), min(crop[1], w)) if crop else (h, w)
    y, x = (h - ch) // 2, (w - cw) // 2
    ch, cw = ch // scale * scale, cw // scale * scale
    return np.ascontiguousarray(frames[:, y : y + ch, x : x + cw])


def make_lr(gt: np.ndarray, cfg: EvalConfig) -> np.ndarray:
    hr = torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 255
    if cfg.degradation == "bicubic":
        lr = bicubic_downscale(hr, cfg.scale)
    else:
        lr = degrade(hr, DegradationConfig(mode=cfg.degradation, scale=cfg.scale), cfg.seed)
    return (lr.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def upscale_baseline(name: str, lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if name == "bicubic":
        x = torch.from_numpy(lr).permute(0, 3, 1, 2).float()
        return bicubic_resize_u8(x, h, w).byte().permute(0, 2, 3, 1).numpy()
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.LANCZOS)) for f in lr])


class ModelMethod:
    def __init__(self, folder: Path, cfg: EvalConfig):
        from .pipeline import Upscaler

        self.name = folder.name
        self.device = cfg.device
        self.upscaler = Upscaler.load(folder, device=cfg.device, dtype=cfg.dtype, color_fix=cfg.color_fix, seed=cfg.seed,
                                       stabilize=cfg.stabilize, linears=cfg.linears)

    def __call__(self, lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        return np.stack(list(self.upscaler.stream(list(lr), width=size[1], height=size[0], batch=8)))


def timed(fn, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


# --------------------------------------------------------------------------------------------
# The evaluation


def evaluate(clips: list[Path], methods: list[str], cfg: EvalConfig, out: Path) -> Report:
    report = Report(cfg)
    runners = {m: (ModelMethod(Path(m), cfg) if m not in BASELINES else m) for m in methods}
    for clip in clips:
        gt = load_ground_truth(clip, cfg.max_frames, cfg.scale, cfg.crop)
        lr = make_lr(gt, cfg)
        size = gt.shape[1:3]
        outputs = {}
        for method, runner in runners.items():
            if isinstance(runner, str):
                sr, seconds = timed(lambda: upscale_baseline(runner, lr, size), "cpu")
                device, label = "cpu", runner
            else:
                sr, seconds = timed(lambda: runner(lr, size), runner.device)
                device, label = runner.device, runner.name
            outputs[label] = sr
            m = frame_metrics(sr, gt, cfg.scale)
            name = clip.stem if clip.is_file() else clip.name
            report.rows.append(Row(name, label, len(gt), m["psnr_y"], m["psnr_rgb"], m["ssim_y"], m["ssim_rgb"],
                                   *temporal_errors(sr, gt), len(gt) / max(seconds, 1e-9), device))  # fmt: skip
        save_crops(out / "crops" / f"{clip.stem}.png", lr, outputs, gt, cfg.scale)
    report.write(out)
    return report


def save_crops(path: Path, lr: np.ndarray, outputs: dict[str, np.ndarray], gt: np.ndarray, scale: int) -> Path:
    """Side by side, at the middle frame: LR (nearest ×scale) | each method | ground truth."""
    t = len(gt) // 2
    h, w = gt.shape[1:3]
    side = min(CROP_SIDE, h, w)
    y, x = (h - side) // 2 // scale * scale, (w - side) // 2 // scale * scale
    lr_crop = lr[t, y // scale : (y + side) // scale, x // scale : (x + side) // scale]
    panels = [("LR", np.asarray(Image.fromarray(lr_crop).resize((side, side), Image.NEAREST)))]
    panels += [(name, sr[t, y : y + side, x : x + side]) for name, sr in outputs.items()]
    panels.append(("ground truth", gt[t, y : y + side, x : x + side]))
    label_h = 16
    canvas = Image.new("RGB", (side * len(panels), side + label_h), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, panel) in enumerate(panels):
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel)), (i * side, label_h))
        draw.text((i * side + 3, 2), name[:24], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
