"""Run a reference fixture folder through the streaming engine and measure the differences.

A fixture folder (``fixtures/parity/<case>/``) holds ``meta.json``, ``input.npz`` and
``expected.npz`` made by the reference release with canonical weights (see the fixtures'
README). :func:`run_parity_case` rebuilds that model, streams the input with the canonical
noise injected, and returns the relative errors of latents, masks, decoded and output frames.
Used by the test-suite (CPU, float32) and by ``benchmarks/gpu_parity.py`` (CUDA, bf16).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import RELEASE_LQ_PROJ_MODE, EngineConfig, SparseAttentionConfig, official_config
from .engine.state import StreamTracer
from .engine.stream import StreamingEngine, resolve_dtype
from .models import FlashVSRModels
from .weights.canonical import canonical_context, canonical_noise, fill_canonical

# Tolerances of a correct float32 implementation (fixtures/README.md).
MASK_MISMATCH_MAX = 1e-3
LATENT_REL_MAX = 1e-4
FRAME_REL_MAX = 2e-3
FRAME_ABS_MAX = 2e-2


@dataclass
class ParityResult:
    case: str
    latent_rel: float = float("nan")
    latent_rel_per_call: list[float] = field(default_factory=list)
    mask_mismatch: dict[str, float] = field(default_factory=dict)
    frames_rel: dict[str, float] = field(default_factory=dict)
    frames_abs: dict[str, float] = field(default_factory=dict)
    output_count: int = 0
    input_count: int = 0
    latents: torch.Tensor | None = field(default=None, repr=False)  # kept for cross-backend checks
    masks: dict | None = field(default=None, repr=False)

    def failures(self) -> list[str]:
        """Every tolerance of the fixtures' README this result breaks (empty when it passes)."""
        bad = []
        if not self.latent_rel <= LATENT_REL_MAX:
            bad.append(f"latents rel {self.latent_rel:.3g} > {LATENT_REL_MAX}")
        bad += [f"{k} differs in {v:.3%}" for k, v in self.mask_mismatch.items() if not v <= MASK_MISMATCH_MAX]
        bad += [f"{k} rel {v:.3g} > {FRAME_REL_MAX}" for k, v in self.frames_rel.items() if not v <= FRAME_REL_MAX]
        bad += [f"{k} max abs {v:.3g} > {FRAME_ABS_MAX}" for k, v in self.frames_abs.items() if not v <= FRAME_ABS_MAX]
        if self.output_count != self.input_count:
            bad.append(f"{self.output_count} frames out for {self.input_count} in")
        return bad


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def fixture_release(meta: dict) -> str:
    """The fixture's release, from its LR-projection rule when given (the rule is what matters)."""
    by_mode = {mode: release for release, mode in RELEASE_LQ_PROJ_MODE.items()}
    if "lq_proj_mode" in meta:
        return by_mode[meta["lq_proj_mode"]]
    return meta["release"]


def build_fixture_models(meta: dict) -> FlashVSRModels:
    """Official sizes with the fixture's layer count and LR-projection rule, canonical weights."""
    if meta.get("lq_proj_layers", 1) != 1:
        raise NotImplementedError("FlashVSR releases use one LR-projection layer (SPEC §3)")
    config = official_config(fixture_release(meta), num_layers=meta["dit_layers"])
    models = FlashVSRModels.build(config, decoders=("tiny",), device="meta")
    for module in (models.dit, models.lq_proj, models.tc_decoder):
        fill_canonical(module, meta["weight_seed"])
    models.context = canonical_context(meta["weight_seed"])
    return models


class FixtureNoise:
    """The fixture's canonical noise for its latent frames; fresh noise for any beyond."""

    def __init__(self, meta: dict):
        self.frames = (meta["padded_frames"] - 1) // 4
        shape = (1, 16, self.frames, meta["height"] // 8, meta["width"] // 8)
        self.noise = canonical_noise(shape, meta["weight_seed"])

    def __call__(self, start: int, count: int, shape: tuple[int, int, int]) -> torch.Tensor:
        out = torch.randn(1, shape[0], count, shape[1], shape[2])
        known = max(0, min(count, self.frames - start))
        out[:, :, :known] = self.noise[:, :, start : start + known]
        return out


def run_parity_case(
    folder: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    backend: str = "auto",
    push_size: int = 5,
    models: FlashVSRModels | None = None,
    compile: bool = False,
    overlap_decode: bool = False,
) -> ParityResult:
    """``models``: prebuilt :func:`build_fixture_models` output (moved to device/dtype in place);
    ``compile``, ``overlap_decode``: the engine's options of those names, checked for exactness."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    expected = np.load(folder / "expected.npz")
    lq_u8 = np.load(folder / "input.npz")["lq_frames_u8"]
    models = models or build_fixture_models(meta)
    engine_cfg = EngineConfig(
        attention=SparseAttentionConfig(
            topk_ratio=meta["topk_ratio"], local_range=meta["local_range"], kv_ratio=meta["kv_ratio"]
        ),
        color_fix="adain",
        dtype=dtype,
        device=device,
        attention_backend=backend,
        compile=compile,
        overlap_decode=overlap_decode,
    )
    models.to(device, resolve_dtype(dtype))
    engine = StreamingEngine(models, engine_cfg)
    last_layer = meta["dit_layers"] - 1
    masks: dict[tuple[int, int], torch.Tensor] = {}
    latents: list[torch.Tensor] = []
    decoded: list[torch.Tensor] = []
    tracer = StreamTracer(
        on_mask=lambda c, layer, m: masks.__setitem__((c, layer), m.cpu()) if layer in (0, last_layer) else None,
        on_latents=lambda c, x: latents.append(x.float().cpu()),
        on_decoded=lambda c, x: decoded.append(x.float().cpu()),
    )
    state = engine.start(meta["height"], meta["width"], noise=FixtureNoise(meta), tracer=tracer)
    frames = torch.from_numpy(lq_u8).permute(0, 3, 1, 2).float() / 255 * 2 - 1
    outputs = [engine.push(state, frames[i : i + push_size].to(device)) for i in range(0, len(frames), push_size)]
    outputs.append(engine.finish(state))
    output = torch.cat(outputs).float().cpu()
    result = _compare(folder.name, meta, expected, masks, latents, decoded, output, last_layer)
    result.latents, result.masks = torch.cat(latents, dim=2), masks
    return result


def _compare(name, meta, expected, masks, latents, decoded, output, last_layer) -> ParityResult:
    result = ParityResult(case=name, output_count=output.shape[0], input_count=meta["input_frames"])
    want = torch.from_numpy(expected["latents"])
    got = torch.cat(latents, dim=2)[:, :, : want.shape[2]]
    result.latent_rel = relative_error(got, want)
    offsets = np.cumsum([0] + [c["latent_frames"] for c in meta["chunks"]])
    result.latent_rel_per_call = [
        relative_error(got[:, :, a:b], want[:, :, a:b]) for a, b in zip(offsets[:-1], offsets[1:])
    ]
    for key in expected.files:
        if key.startswith("mask_chunk"):
            call = int(key.split("chunk")[1].split("_")[0])
            layer = int(key.split("layer")[1])
            if (call, layer) not in masks:
                result.mask_mismatch[key] = 1.0
                continue
            mine = masks[(call, layer)].numpy()
            result.mask_mismatch[key] = float((mine != expected[key]).mean()) if mine.shape == expected[key].shape else 1.0
    y0, x0, h, w = (int(v) for v in expected["crop_yxhw"])
    crop = lambda v: v[..., y0 : y0 + h, x0 : x0 + w]  # noqa: E731
    dec = torch.cat(decoded, dim=2)[0][:, : meta["output_frames"]]
    pairs = {
        "decoded_first4": crop(dec[:, :4]),
        "decoded_last4": crop(dec[:, -4:]),
        "output": crop(output[torch.from_numpy(expected["output_frames"]).long()].transpose(0, 1)),
    }
    for key, mine in pairs.items():
        ref = torch.from_numpy(expected[key].astype(np.float32))
        result.frames_rel[key] = relative_error(mine, ref)
        result.frames_abs[key] = (mine - ref).abs().max().item()
    return result
