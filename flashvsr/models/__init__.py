"""The FlashVSR networks, as plain modules whose parameter names match the official files."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ModelConfig
from .dit import WanDiT
from .lq_proj import LQProjection
from .tc_decoder import TCDecoder
from .wan_vae import WanVAE


@dataclass
class FlashVSRModels:
    """One loaded model: the DiT, its LR projection, the fixed text context and decoders."""

    config: ModelConfig
    dit: WanDiT
    lq_proj: LQProjection
    context: torch.Tensor  # (1, text_len, text_dim)
    tc_decoder: TCDecoder | None = None
    vae: WanVAE | None = None

    def modules(self) -> dict[str, torch.nn.Module]:
        named = {"dit": self.dit, "lq_proj": self.lq_proj, "tc_decoder": self.tc_decoder, "vae": self.vae}
        return {k: m for k, m in named.items() if m is not None}

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "FlashVSRModels":
        for module in self.modules().values():
            module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.context = self.context.to(device=device, dtype=dtype)
        return self

    @staticmethod
    def build(config: ModelConfig, decoders: tuple[str, ...] = ("tiny", "full"), device="cpu") -> "FlashVSRModels":
        """Uninitialised modules of ``config``'s sizes (``device="meta"`` allocates nothing)."""
        with torch.device(device):
            return FlashVSRModels(
                config=config,
                dit=WanDiT(config.dit),
                lq_proj=LQProjection(config.lq_proj),
                context=torch.zeros(1, config.dit.text_len, config.dit.text_dim),
                tc_decoder=TCDecoder(config.tc_decoder) if "tiny" in decoders else None,
                vae=WanVAE(config.vae) if "full" in decoders else None,
            )


__all__ = ["FlashVSRModels", "WanDiT", "LQProjection", "TCDecoder", "WanVAE"]
