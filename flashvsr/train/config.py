"""Training configuration: one dataclass per concern, read from a TOML file.

A stage's file has a ``[run]``, ``[data]``, ``[optim]`` and ``[model]`` table plus the
stage's own table (``[flow]``, ``[sparse]``, ``[dmd]``, ``[decoder_loss]`` or ``[vae_loss]``).
Where the paper (SPEC §10) is silent, the choice is written here as a default and documented
next to it; every one is a setting.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DiTConfig, LQProjConfig, ModelConfig, TCDecoderConfig, VAEConfig
from ..data.degrade import DegradationConfig, RoundConfig

STAGES = ("vae", "stage1", "stage2", "stage3", "tcdecoder")


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs/experiment"
    steps: int = 1000
    max_minutes: float = 0.0  # > 0: also stop (and save) once this much time has passed
    echo: int = 1  # optimizer steps per loaded batch (fresh noise each time): data echoing when loading is slow
    seed: int = 0
    precision: str = "bf16"  # "bf16" autocast, or "fp32"
    gradient_checkpointing: bool = False
    ema_decay: float = 0.999  # EMA of the trained weights; the export uses it
    log_every: int = 10
    checkpoint_every: int = 500
    validate_every: int = 500
    keep_checkpoints: int = 2
    distributed: str = "ddp"  # "ddp" or "fsdp" (FSDP2, fully_shard) under torchrun
    device: str = "auto"


@dataclass(frozen=True)
class DataConfig:
    manifest: str = ""
    root: str = ""
    latent_frames: int = 3  # T: HR clip of 4T−3 frames, LQ clip of 4T+1 (the DiT looks 4 ahead)
    crop: int = 256  # HR crop side (multiples of 128 for sparse attention)
    max_short_side: int = 0  # > 0: downscale larger sources first (720p → 384p HR: fewer codec artefacts)
    frame_store: str = ""  # folder of decoded segments (flashvsr data cache), shared by workers
    scale: int = 4
    frame_step: tuple[int, ...] = (1, 2)  # temporal stride choices: more motion per clip
    image_prob: float = 0.0  # chance a sample is a photo (a 1-latent video)
    batch_size: int = 2
    workers: int = 2
    hflip: bool = True
    lq_on_device: bool = False  # workers only crop; each LQ is degraded on the training device (fast stages)
    soften_prob: float = 0.0  # chance a sample's HR is blurred first (it is then the ground truth too):
    soften_sigma: float = 1.5  # up to this Gaussian σ (HR pixels), so soft LR is not taken for a sharp edge
    still_prob: float = 0.0  # chance a video sample is one frame held still: any change in the output is flicker
    pan_prob: float = 0.0  # chance a video sample (not held still) is one frame panned across: exactly known motion
    pan_speed: int = 4  # HR pixels per frame, at most, in each direction of a pan
    degradation: DegradationConfig = field(default_factory=DegradationConfig)


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4  # paper: 1e-5 for LoRA on the 1.3B model; small models from scratch train faster
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    grad_clip: float = 1.0
    decay: str = "constant"  # "constant", or "cosine" from lr down to lr · min_lr_ratio at run.steps
    min_lr_ratio: float = 0.1


@dataclass(frozen=True)
class FlowConfig:
    """Stage 1/2 flow matching: x_t = (1−σ)x₀ + σε, target v = ε − x₀."""

    timestep_shift: float = 3.0  # σ ← sσ / (1 + (s−1)σ) after a logit-normal draw (Wan-style)
    one_step_weight: float = 0.25  # share of samples drawn at σ = 1, the only step used at inference
    lq_proj_causal: bool = False  # stage 1 uses the non-causal LR projection (paper)
    pack_images: int = 0  # photos packed with each clip into one sequence (block-diagonal mask)
    init_dit: str = ""  # optional Wan2.1-T2V-1.3B DiT weights (safetensors) to start from
    lora_rank: int = 0  # > 0: train LoRA adapters on init_dit instead of all weights (paper: 384)


@dataclass(frozen=True)
class SparseTrainConfig:
    """Stage 2: causal LCSA with randomised window and cache length."""

    local_ranges: tuple[int, ...] = (7, 9, 11)
    kv_slices: tuple[int, ...] = (2, 3, 4)
    sparse_ratio: float = 2.0
    kernel: str = "auto"  # block-sparse kernel: auto (flex on CUDA), flex, flash4 (tested for inference only), gather or dense


@dataclass(frozen=True)
class DMDConfig:
    """Stage 3: distribution matching distillation (student, real score, fake score)."""

    teacher: str = ""  # stage-1 checkpoint (real score, and the fake score's start)
    student: str = ""  # stage-2 checkpoint
    sigma_range: tuple[float, float] = (0.02, 0.98)
    fake_lr: float = 1e-4
    fake_updates_per_step: int = 1  # DMD2 uses several; 1 keeps small runs cheap
    dmd_weight: float = 1.0
    pixel_mse_weight: float = 1.0
    lpips_weight: float = 2.0  # only when lpips_weights is given
    lpips_weights: str = ""
    pixel_latents: int = 2  # latents decoded for pixel losses per step; earlier ones detached
    latent_mse_weight: float = 0.0  # extra regression to the VAE latents (not in the paper; for tiny runs)


TEMPORAL_LOSSES = ("mse", "l1")


@dataclass(frozen=True)
class DecoderLossConfig:
    """TC decoder: MSE (+ LPIPS) to ground truth and to the VAE decoder on the same latents."""

    gt_weight: float = 1.0
    vae_weight: float = 1.0
    lpips_weight: float = 2.0
    lpips_weights: str = ""
    latent_noise: float = 0.0  # > 0: perturb latents by N(0, σ²), σ ~ U(0, this) (not in the paper):
    #                             teaches a decoder for a small, briefly distilled DiT to lean on the LQ frames
    latents: str = "vae"  # "vae" (paper) or "student": the one-step DiT's own latents, as at inference
    student: str = ""  # model folder or Stage-3 checkpoint providing the student (latents = "student")
    restart_output: bool = False  # zero the last layer after loading `init` (switching to a residual decoder)
    temporal_weight: float = 0.0  # loss on the output's frame-to-frame changes against the ground truth's
    #                               (not in the paper): flicker costs more than its share of the pixel MSE
    temporal_loss: str = "mse"  # "mse", or "l1": small flickers in still regions weigh as much as motion errors
    student_lr_scale: float = 0.0  # > 0 (with latents = "student"): the student (DiT + LR projection) learns
    #                                too, end to end through the decoder, at this fraction of optim.lr (not in the
    #                                paper): its latents, not only the decoder, answer to the temporal loss

    def __post_init__(self):
        if self.temporal_loss not in TEMPORAL_LOSSES:
            raise ValueError(f"temporal_loss must be one of {TEMPORAL_LOSSES}, got {self.temporal_loss!r}")
        if self.student_lr_scale < 0 or (self.student_lr_scale and self.latents != "student"):
            raise ValueError("student_lr_scale must be ≥ 0, and > 0 only with latents = 'student'")
        if self.student_lr_scale and self.latent_noise:
            raise ValueError("latent_noise perturbs detached latents: it cannot be used with student_lr_scale")


@dataclass(frozen=True)
class VAELossConfig:
    """Small video autoencoder trained from scratch (when no pretrained VAE is available)."""

    l1_weight: float = 1.0
    mse_weight: float = 1.0
    kl_weight: float = 1e-6
    lpips_weight: float = 0.0
    lpips_weights: str = ""


@dataclass(frozen=True)
class ScoreConfig:
    """Held-out clips scored while training: each centre crop gets the classic bicubic ×4 LQ,
    and the task measures its output against the ground truth (the decoder: PSNR-Y gain over
    the bicubic LQ). The EMA weights with the best ``metric`` are kept as ``best.pt``."""

    clips: tuple[str, ...] = ()  # videos or folders of frames, never trained on
    crop: tuple[int, int] = (128, 384)  # (height, width), multiples of 128 (attention windows)
    every: int = 250  # steps between scores
    metric: str = "score_gain_db"  # higher is better


@dataclass(frozen=True)
class TrainConfig:
    stage: str
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: str = ""  # checkpoint of the previous stage to start from
    vae: str = ""  # checkpoint of the VAE stage: encodes HR clips, decodes for pixel losses
    flow: FlowConfig = field(default_factory=FlowConfig)
    sparse: SparseTrainConfig = field(default_factory=SparseTrainConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    decoder_loss: DecoderLossConfig = field(default_factory=DecoderLossConfig)
    vae_loss: VAELossConfig = field(default_factory=VAELossConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a TOML stage file; ``overrides`` like {"run.steps": 10} patch it (CLI ``--set``).
    Relative paths in ``data`` and checkpoints resolve against the config file's folder."""
    path = Path(path)
    raw = read_toml(path)
    for dotted, value in (overrides or {}).items():
        table = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            table = table.setdefault(p, {})
        table[leaf] = value
    cfg = from_dict(raw)
    check(cfg, path)
    return resolve_paths(cfg, path.parent)


def check(cfg: TrainConfig, source: Path) -> None:
    if cfg.stage not in STAGES:
        raise ValueError(f"{source}: unknown stage {cfg.stage!r}; choose one of {STAGES}")
    decoder_without_vae = cfg.stage == "tcdecoder" and cfg.decoder_loss.latents == "student" and not cfg.decoder_loss.vae_weight
    if cfg.stage != "vae" and not cfg.vae and not decoder_without_vae:
        raise ValueError(f"{source}: stage {cfg.stage} needs `vae = <checkpoint of the vae stage>`")
    t = cfg.data.latent_frames
    if cfg.stage in ("stage2", "stage3") and (t % 2 or t < 6):
        raise ValueError(f"{source}: causal stages need an even number ≥ 6 of latent frames (3 time slices), got {t}")
    if cfg.optim.decay not in ("constant", "cosine"):
        raise ValueError(f"{source}: optim.decay must be constant or cosine, got {cfg.optim.decay!r}")
    if any(side % 128 for side in cfg.score.crop):
        raise ValueError(f"{source}: score.crop sides must be multiples of 128, got {cfg.score.crop}")
    if cfg.stage == "stage3" and not cfg.dmd.teacher:
        raise ValueError(f"{source}: stage3 needs [dmd] teacher = <stage-1 checkpoint>")


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file; ``include = ["common.toml", …]`` merges those files (relative to this one)
    underneath it, so stages share the model and data tables."""
    raw = tomllib.loads(path.read_text())
    merged: dict[str, Any] = {}
    for name in raw.pop("include", []):
        _deep_merge(merged, read_toml(path.parent / name))
    return _deep_merge(merged, raw)


def _deep_merge(base: dict, top: dict) -> dict:
    for k, v in top.items():
        base[k] = _deep_merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    data = dict(raw.get("data", {}))
    deg = dict(data.pop("degradation", {}))
    rounds = {k: _build(RoundConfig, deg.pop(k)) for k in ("round1", "round2") if k in deg}
    data_cfg = _build(DataConfig, {**data, "degradation": _build(DegradationConfig, {**deg, **rounds})})
    model = ModelConfig.from_dict(raw.get("model", {}))
    return TrainConfig(
        stage=raw.get("stage", ""),
        run=_build(RunConfig, raw.get("run", {})),
        data=data_cfg,
        optim=_build(OptimConfig, raw.get("optim", {})),
        model=model,
        init=raw.get("init", ""),
        vae=raw.get("vae", ""),
        flow=_build(FlowConfig, raw.get("flow", {})),
        sparse=_build(SparseTrainConfig, raw.get("sparse", {})),
        dmd=_build(DMDConfig, raw.get("dmd", {})),
        decoder_loss=_build(DecoderLossConfig, raw.get("decoder_loss", {})),
        vae_loss=_build(VAELossConfig, raw.get("vae_loss", {})),
        score=_build(ScoreConfig, raw.get("score", {})),
    )


def resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: str) -> str:
        return str((base / p).resolve()) if p and not Path(p).is_absolute() else p

    return dataclasses.replace(
        cfg,
        run=dataclasses.replace(cfg.run, out_dir=fix(cfg.run.out_dir)),
        data=dataclasses.replace(
            cfg.data, manifest=fix(cfg.data.manifest), root=fix(cfg.data.root), frame_store=fix(cfg.data.frame_store)
        ),
        init=fix(cfg.init),
        vae=fix(cfg.vae),
        flow=dataclasses.replace(cfg.flow, init_dit=fix(cfg.flow.init_dit)),
        dmd=dataclasses.replace(
            cfg.dmd, teacher=fix(cfg.dmd.teacher), student=fix(cfg.dmd.student), lpips_weights=fix(cfg.dmd.lpips_weights)
        ),
        decoder_loss=dataclasses.replace(
            cfg.decoder_loss, lpips_weights=fix(cfg.decoder_loss.lpips_weights), student=fix(cfg.decoder_loss.student)
        ),
        vae_loss=dataclasses.replace(cfg.vae_loss, lpips_weights=fix(cfg.vae_loss.lpips_weights)),
        score=dataclasses.replace(cfg.score, clips=tuple(fix(c) for c in cfg.score.clips)),
    )


def _build(cls, d: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown [{cls.__name__}] settings: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


__all__ = [
    "TrainConfig", "RunConfig", "DataConfig", "OptimConfig", "FlowConfig", "SparseTrainConfig", "DMDConfig",
    "DecoderLossConfig", "VAELossConfig", "load_train_config", "STAGES", "DiTConfig", "LQProjConfig",
    "TCDecoderConfig", "VAEConfig",
]  # fmt: skip
