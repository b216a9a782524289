"""Parity with the reference release: every fixture folder, compared number by number."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from flashvsr.config import VAEConfig, official_config
from flashvsr.models import FlashVSRModels
from flashvsr.models.wan_vae import WanVAE
from flashvsr.parity import LATENT_REL_MAX, relative_error, run_parity_case
from flashvsr.weights.canonical import fill_canonical

from .conftest import FIXTURES, require


def parity_folders() -> list[Path]:
    roots = [FIXTURES / "parity"]
    if os.environ.get("FLASHVSR_PARITY_DIR"):
        roots.append(Path(os.environ["FLASHVSR_PARITY_DIR"]))
    folders = []
    for root in roots:
        if root.is_dir():
            folders += sorted(p for p in root.iterdir() if (p / "meta.json").is_file())
    return folders


CASES = parity_folders()


@pytest.mark.skipif(not CASES, reason=f"no parity fixtures under {FIXTURES / 'parity'} or FLASHVSR_PARITY_DIR")
@pytest.mark.parametrize("folder", CASES, ids=[f"{p.parent.name}-{p.name}" for p in CASES])
def test_streaming_engine_matches_reference(folder: Path):
    result = run_parity_case(folder)
    print(result)
    assert not result.failures(), f"{folder.name}: " + "; ".join(result.failures())
    # each call, not only the whole, must be within tolerance
    assert max(result.latent_rel_per_call) <= LATENT_REL_MAX


def test_wan_vae_matches_reference():
    path = require(FIXTURES / "wan_vae.npz")
    data = np.load(path)
    vae = fill_canonical(WanVAE(VAEConfig()), 0).eval()
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(data["video"]))
        decoded = vae.decode(torch.from_numpy(data["decode_input"]))
    assert relative_error(latents, torch.from_numpy(data["latents"])) <= 1e-4
    assert relative_error(decoded, torch.from_numpy(data["decode_output"])) <= 1e-4


@pytest.mark.parametrize(
    "component,manifest", [("dit", "dit"), ("lq_proj", "lq_proj"), ("tc_decoder", "tc_decoder"), ("vae", "wan_vae")]
)
def test_official_sizes_match_manifest(component: str, manifest: str):
    want = json.loads(require(FIXTURES / "manifest" / f"{manifest}.json").read_text())
    models = FlashVSRModels.build(official_config("v1.1"), device="meta")
    got = {k: list(v.shape) for k, v in models.modules()[component].state_dict().items()}
    assert got == want
