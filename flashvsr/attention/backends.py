"""Exact block-sparse attention kernels, swappable (SPEC §4.6).

Every backend computes the same function: each query window attends, with exact softmax
(scale 1/√d), to the tokens of the key windows its mask row selects; a row that selects no
window outputs zeros. Layout: q (B, heads, Qw, 128, d), k and v (B, heads, Kw, 128, d),
mask (B, heads, Qw, Kw) bool → output shaped like q.

- ``dense``: token-level masked softmax; the plain oracle, for tests and tiny inputs.
- ``gather``: gathers each query window's selected key windows; cost grows with the number
  of selected windows, not with Qw·Kw. The CPU default.
- ``flex``: PyTorch FlexAttention with a 128×128 block mask; the CUDA default.

No backend falls back to dense attention silently: an unknown or unavailable backend raises.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

BlockSparseAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

# Working-set budget of one gather chunk (gathered keys, values and scores), in bytes.
GATHER_CHUNK_BYTES = 256 * 2**20


def dense_block_sparse(q, k, v, mask):
    b, h, nq, t, d = q.shape
    nk = k.shape[2]
    token_mask = mask[:, :, :, None, :, None].expand(b, h, nq, t, nk, t).reshape(b, h, nq * t, nk * t)
    scores = (q.reshape(b, h, nq * t, d).float() @ k.reshape(b, h, nk * t, d).float().transpose(-1, -2)) / math.sqrt(d)
    probs = scores.masked_fill(~token_mask, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    out = probs @ v.reshape(b, h, nk * t, d).float()
    return out.view(b, h, nq, t, d).to(q.dtype)


def gather_block_sparse(q, k, v, mask):
    b, h, nq, t, d = q.shape
    nk = k.shape[2]
    counts = mask.sum(dim=-1)
    most = int(counts.max()) if counts.numel() else 0
    out = torch.zeros_like(q)
    if most == 0:
        return out
    # selected windows first (in ascending key order), padded with unselected ones
    order = mask.to(torch.uint8).argsort(dim=-1, descending=True, stable=True)[..., :most]
    valid = torch.arange(most, device=q.device) < counts[..., None]
    base = (torch.arange(b * h, device=q.device) * nk).view(b, h, 1, 1)
    k_flat, v_flat = k.reshape(b * h * nk, t, d), v.reshape(b * h * nk, t, d)
    per_window = b * h * most * t * (2 * d + t) * 4
    chunk = max(1, GATHER_CHUNK_BYTES // per_window)
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        idx = order[:, :, s:e] + base
        kg, vg = k_flat[idx].float(), v_flat[idx].float()  # (b, h, c, most, t, d)
        scores = torch.einsum("bhqtd,bhqmsd->bhqtms", q[:, :, s:e].float(), kg) / math.sqrt(d)
        scores = scores.masked_fill(~valid[:, :, s:e, None, :, None], float("-inf"))
        probs = scores.flatten(-2).softmax(dim=-1).nan_to_num(0.0).view_as(scores)
        out[:, :, s:e] = torch.einsum("bhqtms,bhqmsd->bhqtd", probs, vg).to(q.dtype)
    return out


_compiled_flex = None


def flex_block_sparse(q, k, v, mask):
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    global _compiled_flex
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    b, h, nq, t, d = q.shape
    nk = k.shape[2]
    counts = mask.sum(dim=-1, dtype=torch.int32)
    indices = mask.to(torch.int8).argsort(dim=-1, descending=True, stable=True).to(torch.int32)
    block_mask = BlockMask.from_kv_blocks(
        torch.zeros_like(counts), indices, counts, indices, BLOCK_SIZE=t, seq_lengths=(nq * t, nk * t)
    )
    out = _compiled_flex(
        q.reshape(b, h, nq * t, d), k.reshape(b, h, nk * t, d), v.reshape(b, h, nk * t, d), block_mask=block_mask
    )
    return out.view(b, h, nq, t, d)


BACKENDS: dict[str, BlockSparseAttention] = {
    "dense": dense_block_sparse,
    "gather": gather_block_sparse,
    "flex": flex_block_sparse,
}


def resolve_backend(name: str, device: torch.device | str) -> BlockSparseAttention:
    """The kernel for ``name``; ``auto`` picks flex on CUDA and gather elsewhere."""
    device = torch.device(device)
    if name == "auto":
        name = "flex" if device.type == "cuda" else "gather"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {sorted(BACKENDS)} or 'auto'")
    if name == "flex" and device.type != "cuda":
        raise ValueError("the flex attention backend needs a CUDA device; use 'gather' on CPU")
    return BACKENDS[name]
