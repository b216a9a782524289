"""Assemble a model folder (config.json + model.safetensors) from stage checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from ..config import ModelConfig
from ..models import FlashVSRModels
from ..models.tc_decoder import TCDecoder
from ..weights.loading import folder_variants, load_model, save_model
from .nets import fixed_context, merge_lora_state, split_prefixed, with_measured_stats
from .trainer import checkpoint_weights, load_checkpoint

CARD_FILE = "MODEL_CARD.md"


def stage_model_config(checkpoint: str | Path) -> ModelConfig:
    """The model sizes a stage was trained with (stored in its checkpoint)."""
    return ModelConfig.from_dict(json.loads(load_checkpoint(checkpoint)["config"])["model"])


def export_model(
    vae: str | Path,
    diffusion: str | Path,
    tc_decoder: str | Path,
    out: str | Path,
    dtype: torch.dtype = torch.float16,
    card: str = "",
    include_vae: bool = True,
) -> Path:
    """``diffusion``: the Stage-3 (or Stage-2) checkpoint; its DiT and causal LR projection,
    the TC decoder and (for the full variant) the VAE, with the measured latent statistics."""
    cfg = stage_model_config(diffusion)
    cfg = replace(cfg, vae=with_measured_stats(cfg.vae, load_checkpoint(vae).get("extra", {})))
    cfg = replace(cfg, lq_proj=replace(cfg.lq_proj, mode="causal"), release="v1.1")
    models = FlashVSRModels.build(cfg, decoders=("tiny", "full") if include_vae else ("tiny",))
    net = merge_lora_state(checkpoint_weights(diffusion, "net"))
    models.dit.load_state_dict(split_prefixed(net, "dit."))
    models.lq_proj.load_state_dict(split_prefixed(net, "lq_proj."))
    models.tc_decoder.load_state_dict(checkpoint_weights(tc_decoder, "tc_decoder"))
    if include_vae:
        models.vae.load_state_dict(split_prefixed(checkpoint_weights(vae, "vae"), "vae."))
    models.context = fixed_context(cfg)
    for module in models.modules().values():
        module.to(dtype)
    folder = save_model(models, out)
    if card:
        (folder / CARD_FILE).write_text(card)
    return folder


def replace_decoder(model: str | Path, tc_decoder: str | Path, out: str | Path, dtype: torch.dtype = torch.float16,
                    card: str = "") -> Path:  # fmt: skip
    """A copy of a model folder with the TC decoder (and its config) from a decoder stage,
    e.g. a residual decoder fine-tuned on the model's own latents; when that stage trained the
    student too (``decoder_loss.student_lr_scale``), its DiT and LR projection come along."""
    decoder_cfg = stage_model_config(tc_decoder).tc_decoder
    models, _ = load_model(model, variants=folder_variants(Path(model)), dtype=torch.float32)
    models.config = replace(models.config, tc_decoder=decoder_cfg)
    models.tc_decoder = TCDecoder(decoder_cfg)
    models.tc_decoder.load_state_dict(checkpoint_weights(tc_decoder, "tc_decoder"))
    if trained_student(tc_decoder):
        net = checkpoint_weights(tc_decoder, "net")
        models.dit.load_state_dict(split_prefixed(net, "dit."))
        models.lq_proj.load_state_dict(split_prefixed(net, "lq_proj."))
    for module in models.modules().values():
        module.to(dtype)
    folder = save_model(models, out)
    card = card or _existing_card(Path(model))
    if card:
        (folder / CARD_FILE).write_text(card)
    return folder


def trained_student(checkpoint: str | Path) -> bool:
    """Whether a decoder stage's checkpoint holds a student it fine-tuned."""
    ckpt = load_checkpoint(checkpoint)
    return "net" in ckpt.get("ema", {}) or "net" in ckpt.get("models", {})


def _existing_card(folder: Path) -> str:
    path = folder / CARD_FILE
    return path.read_text() if path.is_file() else ""
