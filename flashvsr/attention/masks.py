"""Locality-constrained sparse attention (LCSA): block-mask construction (SPEC §4).

Pure functions on tensors. Tokens are grouped into windows of 2×8×8 = 128 tokens; windows
are ordered (time slice, window row, window column) and a time slice holds
``S = rows · cols`` windows. Attention works on tokens in window order, (B, L, heads, d) with
128 consecutive tokens per window. The selected-block mask has shape (B, heads, Q windows,
K windows).
"""

from __future__ import annotations

import math

import torch

from ..config import WINDOW, WINDOW_TOKENS

# kthvalue runs one thread block per row; topk splits long rows. H100, 12 rows (benchmarks/topk_threshold.py,
# 2026-12-06): 17,424 values: kthvalue 0.075 ms, topk 0.105; 72,900 values: kthvalue 0.347, topk 0.107.
TOPK_FROM_LENGTH = 32768


def window_grid(tokens_h: int, tokens_w: int) -> tuple[int, int]:
    """Windows per time slice along rows and columns of a ``tokens_h × tokens_w`` token grid."""
    return tokens_h // WINDOW[1], tokens_w // WINDOW[2]


def window_permutation(frames: int, tokens_h: int, tokens_w: int, device=None) -> torch.Tensor:
    """Indices that put (t, y, x)-ordered tokens in window order: windows ordered (time
    slice, window row, window column), tokens inside a window (t, y, x)."""
    wt, wy, wx = WINDOW
    idx = torch.arange(frames * tokens_h * tokens_w, device=device)
    idx = idx.view(frames // wt, wt, tokens_h // wy, wy, tokens_w // wx, wx)
    return idx.permute(0, 2, 4, 1, 3, 5).reshape(-1)


def to_windows(x: torch.Tensor, frames: int, tokens_h: int, tokens_w: int) -> torch.Tensor:
    """(B, L, …) tokens in (t, y, x) order → the same tokens in window order."""
    return x[:, window_permutation(frames, tokens_h, tokens_w, x.device)]


def from_windows(x: torch.Tensor, frames: int, tokens_h: int, tokens_w: int) -> torch.Tensor:
    """Inverse of :func:`to_windows`."""
    inverse = torch.argsort(window_permutation(frames, tokens_h, tokens_w, x.device))
    return x[:, inverse]


def local_window_mask(rows: int, cols: int, local_range: int, device=None) -> torch.Tensor:
    """(S, S) bool: query window (r, c) may see key window (r', c') within a centred,
    border-truncated ``local_range × local_range`` neighbourhood."""
    r = torch.arange(rows, device=device)
    c = torch.arange(cols, device=device)
    half = local_range // 2
    row_ok = (r[None, :] >= r[:, None] - half) & (r[None, :] <= r[:, None] - half + local_range - 1)
    col_ok = (c[None, :] >= c[:, None] - half) & (c[None, :] <= c[:, None] - half + local_range - 1)
    return (row_ok[:, None, :, None] & col_ok[None, :, None, :]).reshape(rows * cols, rows * cols)


def pooled_windows(x: torch.Tensor) -> torch.Tensor:
    """Mean over each window's tokens: window-ordered (B, L, heads, d) → (B, heads, windows, d)."""
    b, n, h, d = x.shape
    return x.view(b, n // WINDOW_TOKENS, WINDOW_TOKENS, h, d).float().mean(dim=2).transpose(1, 2)


def block_scores(q_pooled: torch.Tensor, k_pooled: torch.Tensor) -> torch.Tensor:
    """Per-head ``q̄·k̄ / √d`` of pooled windows → (B, heads, Q windows, K windows).

    Pooling each head separately equals pooling all heads at once and splitting after.
    """
    return (q_pooled @ k_pooled.transpose(-1, -2)) / math.sqrt(q_pooled.shape[-1])


def topk_count(windows_per_slice: int, topk_ratio: float) -> int:
    """Number of key windows kept per (head, query slice) before capping (SPEC §4.5)."""
    return int(windows_per_slice * windows_per_slice * topk_ratio) - 1


def kth_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """(…, n) → (…, 1): the value that is the (k+1)-th largest of each row (``k`` counts the
    values above it, ties counted by position as a sort would), for 0 ≤ k < n."""
    n = x.shape[-1]
    if not 0 <= k < n:
        raise ValueError(f"k={k} is outside 0…{n - 1} for rows of {n} values")
    if n >= TOPK_FROM_LENGTH:
        return x.topk(k + 1, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)  # the smallest of the k+1 largest
    return x.kthvalue(n - k, dim=-1, keepdim=True).values  # the (n−k)-th smallest


def select_blocks(
    scores: torch.Tensor, local_mask: torch.Tensor, windows_per_slice: int, topk: int
) -> torch.Tensor:
    """Selected key windows per query window: (B, heads, Qw, Kw) bool.

    Softmax over each row's allowed key windows, then a joint top-k over all rows of one
    query time slice: entries strictly above the (k'+1)-th largest probability are kept.
    """
    b, heads, nq, nk = scores.shape
    s = windows_per_slice
    allowed = local_mask.repeat(nq // s, nk // s)
    probs = scores.float().masked_fill(~allowed, float("-inf")).softmax(dim=-1)
    per_slice = probs.view(b, heads, nq // s, s * nk)
    n = per_slice.shape[-1]
    k = max(0, min(n - 1, topk))
    threshold = kth_largest(per_slice.detach(), k)  # a selection, not a sort; no gradient through a threshold
    return (per_slice > threshold).view(b, heads, nq, nk)


def mask_density(mask: torch.Tensor) -> float:
    return mask.float().mean().item()
