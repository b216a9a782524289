"""LoRA adapters for fine-tuning a pretrained Wan2.1 DiT (paper: rank 384, merged after)."""

from __future__ import annotations

import math

import torch
from torch import nn

LORA_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                "cross_attn.q", "cross_attn.o", "ffn.0", "ffn.2")  # fmt: skip


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update ``B·A`` (B starts at zero)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scale = (alpha or rank) / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ self.lora_b.t().to(x.dtype) * self.scale

    def merged(self) -> nn.Linear:
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
            merged.weight.copy_(self.base.weight.float() + delta)
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged.to(self.base.weight.device, self.base.weight.dtype)


def add_lora(model: nn.Module, rank: int, targets: tuple[str, ...] = LORA_TARGETS) -> nn.Module:
    """Freeze ``model`` and put adapters on the linear layers whose names end with a target."""
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.endswith(targets):
            parent, child = _parent(model, name)
            setattr(parent, child, LoRALinear(module, rank))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight: the official parameter names come back."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, child = _parent(model, name)
            setattr(parent, child, module.merged())
    return model


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, child = name.rpartition(".")
    return (model.get_submodule(path) if path else model), child
