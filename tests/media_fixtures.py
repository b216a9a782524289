"""Fixtures of the io, cli and job tests (a pytest plugin: ``pytest_plugins = ["tests.media_fixtures"]``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flashvsr.weights.loading import save_model

from .conftest import tiny_models


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """A tiny random FlashVSR model folder (v1.1 layout, both decoders)."""
    return save_model(tiny_models(), tmp_path_factory.mktemp("weights") / "tiny-model")


@pytest.fixture(scope="module")
def upscaler(weights_dir, one_torch_thread):
    from flashvsr.pipeline import Upscaler

    return Upscaler.load(weights_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on 2 shared cores run faster and steadier on one thread (no OpenMP spinning
    against FFmpeg's encoder threads or other processes)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
