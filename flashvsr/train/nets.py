"""Trainable units: each is one ``nn.Module`` whose ``forward`` does all its work, so DDP and
FSDP2 see every call, and whose state dict splits back into the official component names."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ..config import ModelConfig, VAEConfig
from ..models.dit import AttentionFn, dense_attention
from ..models.dit import WanDiT
from ..models.lq_proj import LQProjection
from ..models.wan_vae import WanVAE
from ..weights.canonical import canonical_context
from .packing import PackedItem, packed_velocity

CONTEXT_SEED = 0  # the small models' fixed "prompt": a seeded random embedding


def with_measured_stats(vae_cfg: VAEConfig, extra: dict) -> VAEConfig:
    """``vae_cfg`` with the latent statistics a VAE-stage checkpoint recorded (``extra``), if any."""
    if "latent_mean" not in extra:
        return vae_cfg
    return replace(vae_cfg, latent_mean=tuple(extra["latent_mean"].tolist()), latent_std=tuple(extra["latent_std"].tolist()))


def fixed_context(cfg: ModelConfig) -> torch.Tensor:
    """Models trained here have no text encoder: a fixed random embedding takes the place of
    the released ``posi_prompt.pth`` and is shipped with the model."""
    return canonical_context(CONTEXT_SEED, (1, cfg.dit.text_len, cfg.dit.text_dim))


class DiffusionNet(nn.Module):
    """LR projection + DiT + fixed context: velocity of noisy latents given the LQ video."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dit = WanDiT(cfg.dit)
        self.lq_proj = LQProjection(replace(cfg.lq_proj, mode="causal"))
        self.register_buffer("context", fixed_context(cfg), persistent=False)

    def forward(
        self,
        noisy: torch.Tensor | list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        lq: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        attention: AttentionFn = dense_attention,
        causal: bool = True,
    ) -> torch.Tensor | list[torch.Tensor]:
        """``noisy`` latents (B, C, T, h, w) with LQ video (B, 3, 4T+1, H, W) and timesteps (B,)
        → velocity; or a list of (noisy, lq, timestep) items of any sizes, packed into one
        sequence with a block-diagonal mask → list of velocities."""
        if isinstance(noisy, list):
            text_kv = self.dit.text_conditioning(self.context)
            items = [PackedItem(n, self.lq_proj(q, causal=causal), t) for n, q, t in noisy]
            return packed_velocity(self.dit, items, text_kv)
        cond = self.dit.condition(self.context, timestep)
        tokens = self.lq_proj(lq, causal=causal)
        return self.dit(noisy, cond, attention, lq_tokens=tokens)


class VAENet(nn.Module):
    """The video autoencoder with the reparameterised sample in its forward."""

    def __init__(self, vae: WanVAE):
        super().__init__()
        self.vae = vae

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, log_var = self.vae.encode_moments(video)
        log_var = log_var.clamp(-30.0, 20.0)
        z = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
        return self.vae.decode(z, normalized=False), mu, log_var


def split_prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def merge_lora_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold LoRA adapters (``x.base.weight`` + ``x.lora_b @ x.lora_a``, scale 1) into plain
    ``x.weight`` keys; a state without adapters is returned unchanged."""
    out = {}
    for k, v in state.items():
        if ".lora_" in k:
            continue
        if ".base." in k:
            stem, leaf = k.split(".base.")
            if leaf == "weight" and f"{stem}.lora_a" in state:
                v = v + (state[f"{stem}.lora_b"].float() @ state[f"{stem}.lora_a"].float()).to(v.dtype)
            out[f"{stem}.{leaf}"] = v
        else:
            out[k] = v
    return out
