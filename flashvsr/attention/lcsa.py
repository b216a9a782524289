"""LCSA as the DiT's self-attention for one streaming call (SPEC §4).

:class:`SparseCallAttention` is built by the engine for a single DiT call from the stream's
KV caches (one :class:`KVCache` per layer). Called by each block, it windows the tokens,
prepends that layer's cached windows, selects key windows, runs the exact block-sparse
kernel and records the layer's updated cache — the engine then stores ``updated`` back in
the stream state. Nothing is kept on the DiT modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..config import WINDOW
from . import masks
from .backends import BlockSparseAttention

MaskHook = Callable[[int, torch.Tensor], None]  # (layer, selected-block mask)


@dataclass
class KVCache:
    """One layer's cached key/value windows (after RoPE), oldest time slice first."""

    k: torch.Tensor  # (B, heads, windows, 128, d)
    v: torch.Tensor

    def slices(self, windows_per_slice: int) -> int:
        return self.k.shape[2] // windows_per_slice


@dataclass(frozen=True)
class AttentionPlan:
    """Per-stream constants of LCSA: the token grid, local mask, top-k and cache length."""

    tokens_h: int
    tokens_w: int
    local_mask: torch.Tensor  # (S, S) bool
    topk: int
    kv_slices: int

    @property
    def windows_per_slice(self) -> int:
        return self.local_mask.shape[0]

    @staticmethod
    def build(tokens_h: int, tokens_w: int, local_range: int, topk_ratio: float, kv_slices: int, device=None):
        if tokens_h % WINDOW[1] or tokens_w % WINDOW[2]:
            raise ValueError(f"token grid {tokens_h}×{tokens_w} is not a multiple of the {WINDOW[1:]} window")
        if kv_slices < 1:
            raise ValueError("kv_ratio must be at least 1")
        rows, cols = masks.window_grid(tokens_h, tokens_w)
        local = masks.local_window_mask(rows, cols, local_range, device=device)
        return AttentionPlan(tokens_h, tokens_w, local, masks.topk_count(rows * cols, topk_ratio), kv_slices)


def append_and_trim(cache: KVCache | None, k: torch.Tensor, v: torch.Tensor, plan: AttentionPlan) -> KVCache:
    """[cache + current]; drop the oldest time slice (one only) if more than ``kv_slices``."""
    if cache is not None:
        k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)
    s = plan.windows_per_slice
    if k.shape[2] // s > plan.kv_slices:
        k, v = k[:, :, s:], v[:, :, s:]
    return KVCache(k, v)


class SparseCallAttention:
    """The DiT self-attention of one streaming call (implements ``AttentionFn``)."""

    def __init__(
        self,
        plan: AttentionPlan,
        caches: list[KVCache | None],
        kernel: BlockSparseAttention,
        on_mask: MaskHook | None = None,
    ):
        self.plan = plan
        self.caches = caches
        self.kernel = kernel
        self.on_mask = on_mask
        self.updated: list[KVCache | None] = list(caches)

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.plan
        frames = q.shape[1] // (p.tokens_h * p.tokens_w)
        qw, kw, vw = (masks.to_windows(x, frames, p.tokens_h, p.tokens_w) for x in (q, k, v))
        cache = self.caches[layer]
        k_all = kw if cache is None else torch.cat([cache.k, kw], dim=2)
        v_all = vw if cache is None else torch.cat([cache.v, vw], dim=2)
        scores = masks.block_scores(masks.pooled_windows(qw), masks.pooled_windows(k_all))
        selected = masks.select_blocks(scores, p.local_mask, p.windows_per_slice, p.topk)
        if self.on_mask is not None:
            self.on_mask(layer, selected)
        out = self.kernel(qw, k_all, v_all, selected)
        self.updated[layer] = append_and_trim(cache, kw, vw, p)
        return masks.from_windows(out, frames, p.tokens_h, p.tokens_w)
