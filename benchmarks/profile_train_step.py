"""Where a training stage's time goes: the data loader alone (batches per second with the
configured workers) against the task's step alone (on one fixed batch, CUDA-synchronised).

    python benchmarks/profile_train_step.py STAGE CONFIG [--set key=value ...] [--batches 20] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from flashvsr.data.datasets import ClipDataset, loader
from flashvsr.data.manifest import read_manifest
from flashvsr.train import distributed as D
from flashvsr.train.cli import _overrides
from flashvsr.train.config import load_train_config
from flashvsr.train.stages import TASKS
from flashvsr.train.trainer import Trainer


def rate(fn, count: int, sync) -> float:
    fn()  # warm-up (workers start, kernels pick algorithms)
    sync()
    t0 = time.perf_counter()
    for _ in range(count):
        fn()
    sync()
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage")
    ap.add_argument("config")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    cfg = load_train_config(args.config, {**_overrides(args.set), "stage": args.stage})
    env = D.setup(cfg.run.device)
    sync = torch.cuda.synchronize if env.device.type == "cuda" else (lambda: None)
    dataset = ClipDataset(read_manifest(cfg.data.manifest), cfg.data.root, replace(cfg.data, image_prob=0.0), 0)
    batches = loader(dataset, cfg.data.batch_size, cfg.data.workers)
    trainer = Trainer(cfg, env)
    task = TASKS[cfg.stage](cfg, trainer)
    trainer.attach(task)
    load = rate(lambda: next(batches), args.batches, lambda: None)
    batch = trainer.on_device(next(batches))
    to_device = rate(lambda: trainer.on_device(next(batches)), args.batches, sync)
    step = rate(lambda: task.train_step(batch, 0), args.steps, sync)
    print(json.dumps({"loader_batches_per_s": round(load, 2), "loader_to_device_batches_per_s": round(to_device, 2),
                      "train_steps_per_s": round(step, 2), "batch_size": cfg.data.batch_size,
                      "workers": cfg.data.workers, "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if env.device.type == "cuda" else None}))  # fmt: skip


if __name__ == "__main__":
    main()
