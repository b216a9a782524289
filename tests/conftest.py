"""Shared test helpers: where the read-only reference material lives, small random models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FLASHVSR_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"

torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference material not found at {path} (set FLASHVSR_SHARED)")
    return path


def tiny_model_config(release: str = "v1.1", layers: int = 2):
    """A miniature FlashVSR (same code, tiny widths) for fast CPU tests."""
    from flashvsr.config import (
        RELEASE_LQ_PROJ_MODE, DiTConfig, LQProjConfig, ModelConfig, TCDecoderConfig, VAEConfig,
    )  # fmt: skip

    return ModelConfig(
        dit=DiTConfig(dim=32, num_layers=layers, num_heads=2, ffn_dim=64, text_dim=16, text_len=8, freq_dim=16),
        lq_proj=LQProjConfig(hidden1=24, hidden2=32, out_dim=32, mode=RELEASE_LQ_PROJ_MODE[release]),
        tc_decoder=TCDecoderConfig(channels=(16, 8, 8)),
        vae=VAEConfig(base_dim=8),
        release=release,
    )


def tiny_models(release: str = "v1.1", layers: int = 2, seed: int = 0, decoders=("tiny", "full")):
    from flashvsr.models import FlashVSRModels
    from flashvsr.weights.canonical import canonical_context, fill_canonical

    models = FlashVSRModels.build(tiny_model_config(release, layers), decoders=decoders, device="meta")
    for module in models.modules().values():
        fill_canonical(module, seed)
    cfg = models.config.dit
    models.context = canonical_context(seed, (1, cfg.text_len, cfg.text_dim))
    return models.to("cpu", torch.float32)


def random_frames(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random LQ frames in [-1, 1] with some temporal coherence."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, height // 8, width // 8, generator=g)
    drift = torch.rand(n, 3, height // 8, width // 8, generator=g) * 0.3
    small = (base + drift.cumsum(0) * 0.1).remainder(1.0)
    frames = torch.nn.functional.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    return frames * 2 - 1


@pytest.fixture(autouse=True)
def grad_mode_is_left_as_found():
    """A test (or the code it runs) must not leave autograd switched off for the tests after it,
    as a suspended generator inside ``torch.no_grad()`` would."""
    yield
    assert torch.is_grad_enabled(), "autograd was left disabled"
    torch.set_grad_enabled(True)
