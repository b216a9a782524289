"""Packing clips and photos of different sizes into one token sequence (Stage 1).

Each item keeps its own RoPE grid (time from 0) and its own noise level (per-token time
modulation); a block-diagonal mask keeps items from attending to each other. The result is
the same as running the items one by one, with one large matrix product per layer instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.dit import DiTConditioning, WanDiT, rope_cos_sin
from .attention import SegmentAttention


@dataclass
class PackedItem:
    latents: torch.Tensor  # noisy input (1, C, f, h, w)
    lq_tokens: torch.Tensor  # (1, f·h'·w', dim)
    timestep: torch.Tensor  # (1,) in 0…1000


def packed_velocity(dit: WanDiT, items: list[PackedItem], text_kv) -> list[torch.Tensor]:
    """The DiT on all items at once; returns each item's velocity (1, C, f, h, w)."""
    tokens, cos, sin, t_emb, t_mod, segments, grids = [], [], [], [], [], [], []
    for i, item in enumerate(items):
        grid = dit.token_grid(item.latents)
        x = dit.patchify(item.latents.to(dit.patch_embedding.weight.dtype)) + item.lq_tokens
        c, s = rope_cos_sin(torch.arange(grid[0]), grid[1], grid[2], dit.cfg.head_dim)
        e, m = dit.time_conditioning(item.timestep)
        n = x.shape[1]
        tokens.append(x)
        cos.append(c)
        sin.append(s)
        t_emb.append(e[:, None].expand(-1, n, -1))
        t_mod.append(m[:, None].expand(-1, n, -1, -1))
        segments.append(torch.full((n,), i))
        grids.append(grid)
    x = torch.cat(tokens, dim=1)
    device = x.device
    cond = DiTConditioning(t_emb=torch.cat(t_emb, 1), t_mod=torch.cat(t_mod, 1), text_kv=text_kv)
    rope = (torch.cat(cos).to(device), torch.cat(sin).to(device))
    out = dit.forward_tokens(x, cond, rope, SegmentAttention(torch.cat(segments).to(device)))
    sizes = [g[0] * g[1] * g[2] for g in grids]
    return [dit.unpatchify(o, g) for o, g in zip(out.split(sizes, dim=1), grids)]
