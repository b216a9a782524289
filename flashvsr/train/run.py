"""Run one training stage from its config file (``flashvsr train STAGE CONFIG``).

Launch with ``python -m flashvsr train …`` on one device, or with
``torchrun --nproc-per-node N -m flashvsr train …`` (and ``--nnodes`` for several machines):
every process reads the same config, joins the process group and draws its own samples.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..data.datasets import ClipDataset, held_out_batch, loader
from ..data.manifest import read_manifest
from . import distributed as D
from .config import TrainConfig, load_train_config
from .stages import TASKS, FlowTask
from .trainer import Trainer

VALIDATION_SEED = 12345


def run_stage(config: str | Path | TrainConfig, overrides: dict[str, Any] | None = None) -> dict[str, float]:
    cfg = config if isinstance(config, TrainConfig) else load_train_config(config, overrides)
    env = D.setup(cfg.run.device)
    try:
        torch.manual_seed(cfg.run.seed * 1000 + env.rank)
        trainer = Trainer(cfg, env)
        segments = read_manifest(cfg.data.manifest)
        videos_only = cfg.stage in ("stage2", "stage3")
        data = replace(cfg.data, image_prob=0.0) if videos_only else cfg.data
        hr_only = cfg.stage == "vae"
        dataset = ClipDataset(segments, cfg.data.root, data, cfg.run.seed, env.rank, env.world, hr_only)
        batches = loader(dataset, data.batch_size, data.workers)
        task_cls = TASKS[cfg.stage]
        if task_cls is FlowTask:
            task = FlowTask(cfg, trainer, _photo_batches(cfg, segments, env) if cfg.flow.pack_images else None)
        else:
            task = task_cls(cfg, trainer)
        trainer.attach(task)
        val_data = replace(cfg.data, image_prob=0.0, batch_size=1)
        val = next(loader(ClipDataset(segments, cfg.data.root, val_data, VALIDATION_SEED, hr_only=hr_only), 1, 0))
        score = None
        if cfg.score.clips:
            score = held_out_batch(cfg.score.clips, cfg.score.crop, cfg.data.latent_frames, cfg.data.degradation.scale)
        return trainer.fit(batches, val, score)
    finally:
        D.teardown()


def _photo_batches(cfg: TrainConfig, segments, env: D.DistEnv):
    photos = replace(cfg.data, image_prob=1.0, latent_frames=1)
    count = cfg.flow.pack_images * cfg.data.batch_size
    dataset = ClipDataset(segments, cfg.data.root, photos, cfg.run.seed + 1, env.rank, env.world)
    return loader(dataset, count, cfg.data.workers)
