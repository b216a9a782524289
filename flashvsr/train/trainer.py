"""The training loop shared by every stage.

A stage is a :class:`Task`: it owns its modules (trainable and frozen), builds its losses and
calls :meth:`Trainer.optimize` for each optimizer it steps. The trainer does everything else
the same way for all stages: process group and device, bf16 autocast, DDP/FSDP2 wrapping,
warm-up and decay schedule, gradient clipping, EMA, checkpoints (saved and resumed), metrics
(TensorBoard and JSONL), validation images and held-out scores (the best EMA weights kept).

Checkpoints are plain ``torch.save`` files of full (unsharded) state dicts, read back with
``weights_only=True``: ``models``, ``ema``, ``optimizers``, ``step`` and a task's ``extra``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.datasets import finish_lq
from . import distributed as D
from .config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"
FINAL = "final.pt"  # EMA weights and task state only: what later stages and the export read
BEST = "best.pt"  # the same, for the EMA weights that scored best on the held-out clips


class Task(Protocol):
    trainable: dict[str, nn.Module]  # checkpointed, EMA'd and exported under these names
    # optional: ``learning_rates`` (optimizer name → rate, default optim.lr) and ``lr_scales``
    # (trainable name → fraction of its optimizer's rate, default 1)

    def optimizer_groups(self) -> dict[str, list[str]]: ...  # optimizer name → trainable names
    def train_step(self, batch: dict, step: int) -> dict[str, torch.Tensor]: ...
    def validate(self, batch: dict) -> dict[str, torch.Tensor]: ...  # name → (B, 3, T, H, W) in [-1, 1]
    def extra_state(self) -> dict: ...
    def load_extra_state(self, state: dict) -> None: ...


def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint, read without executing code from the file."""
    path = Path(path)
    if path.is_dir():
        path = path / FINAL if (path / FINAL).is_file() else path / CHECKPOINT_DIR / LAST
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_weights(path: str | Path, name: str, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    ckpt = load_checkpoint(path)
    table = ckpt["ema"] if prefer_ema and name in ckpt.get("ema", {}) else ckpt["models"]
    if name not in table:
        raise KeyError(f"{path} holds no weights for {name!r} (has {sorted(table)})")
    return table[name]


class Trainer:
    def __init__(self, cfg: TrainConfig, env: D.DistEnv):
        self.cfg = cfg
        self.env = env
        self.out = Path(cfg.run.out_dir)
        self.step = 0
        self.task: Task | None = None
        self.best_score = -math.inf
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.ema: dict[str, dict[str, torch.Tensor]] = {}
        self._writer = None
        self._log_file = None

    # -- set-up --------------------------------------------------------------------------------
    def attach(self, task: Task) -> None:
        """Wrap the task's trainable modules for distribution and build optimizers and EMA."""
        self.task = task
        for name, module in task.trainable.items():
            task.trainable[name] = D.wrap(module, self.env, self.cfg.run.distributed)
        o = self.cfg.optim
        scales = getattr(task, "lr_scales", {})  # trainable name → fraction of its optimizer's rate
        for opt_name, names in task.optimizer_groups().items():
            lr = getattr(task, "learning_rates", {}).get(opt_name, o.lr)
            groups = [{"params": [p for p in task.trainable[n].parameters() if p.requires_grad],
                       "lr": lr * scales.get(n, 1.0)} for n in names]  # fmt: skip
            self.optimizers[opt_name] = torch.optim.AdamW(
                groups, lr=lr, betas=o.betas, weight_decay=o.weight_decay, fused=self.env.device.type == "cuda"
            )
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]
        self.ema = {
            name: {k: p.detach().clone() for k, p in D.unwrap(m).named_parameters() if p.requires_grad}
            for name, m in task.trainable.items()
        }

    # -- optimisation --------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        enabled = self.cfg.run.precision == "bf16"
        return torch.autocast(self.env.device.type, dtype=torch.bfloat16, enabled=enabled)

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        """Backward, clip, step the optimizer ``name`` with the warm-up schedule; returns the
        gradient norm."""
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip) if params else torch.zeros(())
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * self.lr_factor()
        opt.step()
        return float(norm)

    def lr_factor(self) -> float:
        """Linear warm-up, then constant or cosine down to ``min_lr_ratio`` at ``run.steps``."""
        o = self.cfg.optim
        warm = min(1.0, (self.step + 1) / max(1, o.warmup_steps))
        if o.decay == "constant":
            return warm
        progress = min(1.0, max(0, self.step - o.warmup_steps) / max(1, self.cfg.run.steps - o.warmup_steps))
        return warm * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    def ema_decay(self) -> float:
        """The configured decay, warmed up as (1+n)/(10+n): early on the EMA follows the
        weights, so a short run's EMA is not mostly its random initialisation."""
        return min(self.cfg.run.ema_decay, (1 + self.step) / (10 + self.step))

    @contextlib.contextmanager
    def ema_weights(self):
        """The trainable modules hold their EMA weights inside the block (for scoring)."""
        self._swap_with_ema()
        try:
            yield
        finally:
            self._swap_with_ema()

    @torch.no_grad()
    def _swap_with_ema(self) -> None:
        for name, module in self.task.trainable.items():
            params = dict(D.unwrap(module).named_parameters())
            for k, shadow in self.ema[name].items():
                live = params[k].detach().clone()
                params[k].copy_(shadow)
                shadow.copy_(live)

    @torch.no_grad()
    def update_ema(self) -> None:
        decay = self.ema_decay()
        for name, module in self.task.trainable.items():
            params = dict(D.unwrap(module).named_parameters())
            for k, shadow in self.ema[name].items():
                shadow.lerp_(params[k].detach(), 1 - decay)

    # -- the loop -----------------------------------------------------------------------------
    def fit(
        self, batches: Iterator[dict], validation_batch: dict | None = None, score_batch: dict | None = None
    ) -> dict[str, float]:
        run = self.cfg.run
        self.resume()
        last: dict[str, float] = {}
        start, t0 = self.step, time.perf_counter()
        batch = None
        while self.step < run.steps and not self._out_of_time(t0):
            if batch is None or (self.step - start) % run.echo == 0:
                batch = self.on_device(next(batches))
            losses = self.task.train_step(batch, self.step)
            self.update_ema()
            self.step += 1
            last = {k: float(D.mean_across(v.detach().float(), self.env)) for k, v in losses.items()}
            if not all(math.isfinite(v) for v in last.values()):
                raise FloatingPointError(f"non-finite loss at step {self.step}: {last}")
            if self.step % run.log_every == 0 or self.step == run.steps:
                rate = (self.step - start) / (time.perf_counter() - t0)
                self.log({**last, "steps_per_s": rate})
            if self.step % run.checkpoint_every == 0 or self.step == run.steps:
                self.save()
            if validation_batch is not None and (self.step % run.validate_every == 0 or self.step == run.steps):
                self.save_samples(validation_batch)
            if score_batch is not None and (self.step % self.cfg.score.every == 0 or self.step == run.steps):
                self.score(score_batch)
        if self.step % run.checkpoint_every and self.step != run.steps:  # stopped by the time budget
            if score_batch is not None and self.step % self.cfg.score.every:
                self.score(score_batch)
            self.save()
            if validation_batch is not None:
                self.save_samples(validation_batch)
        self.save_final()
        return last

    def on_device(self, batch: dict) -> dict:
        batch = {k: v.to(self.env.device, non_blocking=True) for k, v in batch.items()}
        return finish_lq(batch, self.cfg.data.degradation)

    def _out_of_time(self, t0: float) -> bool:
        """The same decision on every rank (rank 0's clock)."""
        if self.cfg.run.max_minutes <= 0:
            return False
        late = torch.tensor(float(time.perf_counter() - t0 > 60 * self.cfg.run.max_minutes), device=self.env.device)
        if self.env.active:
            torch.distributed.broadcast(late, src=0)
        return bool(late.item())

    def score(self, batch: dict) -> dict[str, float]:
        """Score the EMA weights on the held-out batch, log it, and keep them as ``best.pt``
        when ``score.metric`` improves."""
        with self.ema_weights(), self.autocast():
            values = self.task.score(self.on_device(batch))
        metric = self.cfg.score.metric
        if metric not in values:
            raise KeyError(f"score.metric {metric!r} is not among the task's scores {sorted(values)}")
        improved = values[metric] > self.best_score
        if improved:
            self.best_score = values[metric]
            self.save_final(BEST)
        self.log({**values, "best_" + metric: self.best_score})
        return values

    def save_final(self, name: str = FINAL) -> Path | None:
        """``final.pt`` (or ``name``): EMA weights (float32) and the task's state, without optimizer state."""
        state = {
            "stage": self.cfg.stage,
            "step": self.step,
            "config": json.dumps(dataclasses.asdict(self.cfg), default=str),
            "models": {},
            "ema": {n: _gather(t) for n, t in self.ema.items()},
            "extra": self.task.extra_state(),
        }
        if not self.env.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        torch.save(state, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        return path

    # -- metrics and samples ------------------------------------------------------------------
    def log(self, values: dict[str, float]) -> None:
        if not self.env.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self._log_file is None:
            self._log_file = open(self.out / "metrics.jsonl", "a")
            self._writer = _tensorboard(self.out / "tensorboard")
        self._log_file.write(json.dumps({"step": self.step, **values}) + "\n")
        self._log_file.flush()
        if self._writer is not None:
            for k, v in values.items():
                self._writer.add_scalar(k, v, self.step)
        print(f"step {self.step:6d}  " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()), flush=True)

    @torch.no_grad()
    def save_samples(self, batch: dict) -> Path | None:
        batch = self.on_device(batch)
        with self.autocast():
            rows = self.task.validate(batch)
        if not self.env.is_main:
            return None
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_grid(rows)).save(path)
        return path

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self) -> Path | None:
        state = {
            "stage": self.cfg.stage,
            "step": self.step,
            "config": json.dumps(dataclasses.asdict(self.cfg), default=str),
            "models": {n: D.full_state_dict(m) for n, m in self.task.trainable.items()},
            "ema": {n: _gather(t) for n, t in self.ema.items()},
            "optimizers": {n: _optimizer_state(self.task, n, o, self.env) for n, o in self.optimizers.items()},
            "extra": self.task.extra_state(),
            "best_score": self.best_score,
        }
        if not self.env.is_main:
            return None
        folder = self.out / CHECKPOINT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"step_{self.step:07d}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        shutil.copyfile(path, folder / (LAST + ".tmp"))
        (folder / (LAST + ".tmp")).replace(folder / LAST)
        for old in sorted(folder.glob("step_*.pt"))[: -self.cfg.run.keep_checkpoints]:
            old.unlink()
        return path

    def resume(self) -> bool:
        path = self.out / CHECKPOINT_DIR / LAST
        if not path.is_file():
            return False
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        for name, module in self.task.trainable.items():
            D.load_full_state_dict(module, ckpt["models"][name])
            for k, shadow in self.ema[name].items():
                _copy_into(shadow, ckpt["ema"][name][k])
        for name, opt in self.optimizers.items():
            _load_optimizer_state(self.task, name, opt, ckpt["optimizers"][name], self.env)
        self.task.load_extra_state(ckpt.get("extra", {}))
        self.step = int(ckpt["step"])
        self.best_score = float(ckpt.get("best_score", -math.inf))
        if self.env.is_main:
            print(f"resumed from {path} at step {self.step}", flush=True)
        return True


def _gather(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    return {k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone() for k, v in tensors.items()}


def _copy_into(shadow: torch.Tensor, full: torch.Tensor) -> None:
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(shadow, DTensor):
        full = distribute_tensor(full.to(shadow.device), shadow.device_mesh, shadow.placements)
    shadow.copy_(full.to(shadow.device, shadow.dtype))


def _optimizer_modules(task: Task, name: str) -> list[nn.Module]:
    return [task.trainable[n] for n in task.optimizer_groups()[name]]


def _optimizer_state(task: Task, name: str, opt: torch.optim.Optimizer, env: D.DistEnv) -> dict:
    """Full optimizer state keyed by parameter names (portable across world sizes)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    modules = [D.unwrap(m) for m in _optimizer_modules(task, name)]
    model = modules[0] if len(modules) == 1 else nn.ModuleList(modules)
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, opt, options=opts)


def _load_optimizer_state(task: Task, name: str, opt, state: dict, env: D.DistEnv) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    modules = [D.unwrap(m) for m in _optimizer_modules(task, name)]
    model = modules[0] if len(modules) == 1 else nn.ModuleList(modules)
    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional; metrics.jsonl is always written
        return None
    return SummaryWriter(str(folder))


def image_grid(rows: dict[str, torch.Tensor], frames: int = 4) -> np.ndarray:
    """Rows of (B, 3, T, H, W) videos in [-1, 1]: the first sample's first ``frames`` frames."""
    lines = []
    for video in rows.values():
        v = video[0].float().clamp(-1, 1)
        picks = torch.linspace(0, v.shape[1] - 1, min(frames, v.shape[1])).round().long()
        lines.append(torch.cat(list(v[:, picks].unbind(1)), dim=-1))
    width = max(line.shape[-1] for line in lines)
    lines = [torch.nn.functional.pad(line, (0, width - line.shape[-1])) for line in lines]
    grid = (torch.cat(lines, dim=-2) + 1) * 127.5
    return grid.round().byte().permute(1, 2, 0).cpu().numpy()
