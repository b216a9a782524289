"""Deterministic "canonical" weights: every parameter a function of its key and shape.

This is the rule the parity fixtures were made with (``fixtures/README.md``); it also gives
benchmarks realistic, reproducible random models. Values are drawn with NumPy's legacy
``RandomState`` seeded by ``crc32(key) + seed``.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torch import nn


def _random_state(name: bytes, seed: int) -> np.random.RandomState:
    return np.random.RandomState((zlib.crc32(name) + seed) % 2**32)


def canonical_tensor(key: str, shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    z = _random_state(key.encode("utf-8"), seed).standard_normal(size=shape).astype(np.float32)
    last = key.rsplit(".", 1)[-1]
    if last == "gamma" or (last == "weight" and "norm" in key):
        value = 1 + 0.1 * z
    elif len(shape) >= 2:
        value = z / math.sqrt(math.prod(shape[1:]))
    else:
        value = 0.02 * z
    return torch.from_numpy(value)


def canonical_state_dict(module: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    return {k: canonical_tensor(k, tuple(v.shape), seed) for k, v in module.state_dict().items()}


def fill_canonical(module: nn.Module, seed: int = 0) -> nn.Module:
    """Overwrite every parameter and persistent buffer of ``module`` in place."""
    module.load_state_dict(canonical_state_dict(module, seed), strict=True, assign=True)
    return module


def canonical_context(seed: int = 0, shape=(1, 512, 4096)) -> torch.Tensor:
    """The fixtures' stand-in for the fixed text-prompt embedding."""
    return torch.from_numpy(_random_state(b"context", seed).standard_normal(shape).astype(np.float32))


def canonical_noise(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(_random_state(b"noise", seed).standard_normal(shape).astype(np.float32))
