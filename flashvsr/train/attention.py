"""Self-attention variants for training the DiT.

- :class:`CausalSparseAttention`: LCSA over a whole clip at once, with the causal structure
  of streaming — the first three time slices see each other (inference call 0), every later
  slice sees the slices the KV cache would hold plus itself — and the very same mask rule per
  call. A clip processed this way gives exactly the streaming engine's result (Stages 2–3:
  parallel training, no unrolling).
- :class:`SegmentAttention`: dense attention with a block-diagonal mask, so each item of a
  packed sequence (clips and photos) attends only to itself (Stage 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention import masks
from ..attention.backends import BlockSparseAttention
from ..engine.schedule import FIRST_CALL_LATENTS, LATENTS_PER_CALL

FIRST_CALL_SLICES = FIRST_CALL_LATENTS // LATENTS_PER_CALL


def call_groups(num_slices: int, kv_slices: int) -> list[tuple[list[int], list[int]]]:
    """(query slices, key slices) of every streaming call over ``num_slices`` time slices,
    following the engine's cache rule: append, then drop the oldest slice if over budget."""
    first = min(FIRST_CALL_SLICES, num_slices)
    groups = [(list(range(first)), list(range(first)))]
    cache = list(range(first))
    cache = cache[1:] if len(cache) > kv_slices else cache
    for s in range(first, num_slices):
        keys = cache + [s]
        groups.append(([s], keys))
        cache = keys[1:] if len(keys) > kv_slices else keys
    return groups


def causal_block_mask(
    q_pooled: torch.Tensor, k_pooled: torch.Tensor, local: torch.Tensor, kv_slices: int, topk: int
) -> torch.Tensor:
    """Selected blocks (B, heads, N·S, N·S) for a whole clip, call by call."""
    s = local.shape[0]
    n = q_pooled.shape[2] // s
    scores = masks.block_scores(q_pooled, k_pooled)
    selected = torch.zeros_like(scores, dtype=torch.bool)
    for q_slices, k_slices in call_groups(n, kv_slices):
        rows = torch.cat([torch.arange(i * s, (i + 1) * s) for i in q_slices])
        cols = torch.cat([torch.arange(j * s, (j + 1) * s) for j in k_slices])
        sub = scores[:, :, rows][:, :, :, cols]
        selected[:, :, rows[:, None], cols[None, :]] = masks.select_blocks(sub, local, s, topk)
    return selected


class CausalSparseAttention:
    def __init__(self, tokens_h: int, tokens_w: int, local_range: int, kv_slices: int, topk_ratio: float,
                 kernel: BlockSparseAttention):  # fmt: skip
        rows, cols = masks.window_grid(tokens_h, tokens_w)
        self.tokens_h, self.tokens_w = tokens_h, tokens_w
        self.local = masks.local_window_mask(rows, cols, local_range)
        self.kv_slices = kv_slices
        self.topk = masks.topk_count(rows * cols, topk_ratio)
        self.kernel = kernel

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        frames = q.shape[1] // (self.tokens_h * self.tokens_w)
        order = masks.window_permutation(frames, self.tokens_h, self.tokens_w, q.device)
        qw, kw, vw = q[:, order], k[:, order], v[:, order]
        with torch.no_grad():
            local = self.local.to(q.device)
            selected = causal_block_mask(masks.pooled_windows(qw), masks.pooled_windows(kw), local, self.kv_slices, self.topk)
        out = self.kernel(qw, [(kw, vw, selected)])
        return out[:, torch.argsort(order)].flatten(2)


class SegmentAttention:
    """Dense attention where token i sees token j only if both belong to the same item."""

    def __init__(self, segment_ids: torch.Tensor):
        self.allowed = segment_ids[:, None] == segment_ids[None, :]

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=self.allowed.to(q.device)
        )
        return out.transpose(1, 2).flatten(2)
