"""Exact block-sparse attention kernels, swappable (SPEC §4.6).

Every backend computes the same function: each query window attends, with exact softmax
(scale 1/√d), to the tokens of the key windows its mask row selects; a row that selects no
window outputs zeros.

Layout: tokens in window order (128 consecutive tokens per window) as (B, L, heads, d).
Keys and values come in *parts* — e.g. the KV cache's fixed slots and the current call's
windows — each with its own block mask (B, heads, Q windows, part's K windows); the softmax
runs over all parts together. The output is (B, Lq, heads, d). Kernels that ``take_columns``
also accept one part whose mask columns name windows of larger keys (a layer's ring and the
call's windows inside the stream's KV pool): one call, no merge.

- ``dense``: token-level masked softmax over the concatenated parts; the plain oracle.
- ``gather``: gathers each query window's selected key windows; cost grows with the number
  of selected windows, not with Qw·Kw. The CPU default.
- ``flex``: PyTorch FlexAttention with a 128×128 block mask per part, parts merged exactly
  through their log-sum-exp (no copy of the cache). The CUDA default.
- ``flash4``: FlashAttention-4's CuTe-DSL kernel (``pip install flash-attn-4``; Hopper or
  newer) with the same 128×128 full-block tables and the same merge; 1.4× flex's speed on the
  H100 (benchmarks/flash4_attention.py). Optional: ``auto`` picks it for inference where it is
  installed; asking for it by name without it is an error.

No backend falls back to dense attention silently: an unknown or unavailable backend raises.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import math
import warnings
from typing import Callable, Sequence

import torch

from ..config import WINDOW_TOKENS
from ..kernels.block_choice import selected_first

# keys, values, block mask — and optionally columns (K,) int32: mask column j selects the keys'
# window columns[j], so that a part reads a few windows of a larger pool (kernels that take_columns)
KVPart = tuple[torch.Tensor, ...]
BlockSparseAttention = Callable[[torch.Tensor, Sequence[KVPart]], torch.Tensor]

# Working-set budget of one gather chunk (gathered keys, values and scores), in bytes.
GATHER_CHUNK_BYTES = 256 * 2**20


def join_parts(parts: Sequence[KVPart]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The parts as one (keys, values, mask, columns or None): several parts' keys and values
    concatenated along tokens, their masks along key windows."""
    if len(parts) == 1:
        k, v, mask, *columns = parts[0]
        return k, v, mask, columns[0] if columns else None
    if any(len(part) > 3 for part in parts):
        raise ValueError("parts with columns come alone")
    k, v, mask = (torch.cat(xs, dim=1 if i < 2 else -1) for i, xs in enumerate(zip(*parts)))
    return k, v, mask, None


def takes_columns(kernel: BlockSparseAttention) -> bool:
    """Whether ``kernel`` reads a part's windows through its columns (one part over a pool)."""
    return getattr(kernel, "takes_columns", False)


def _as_windows(x: torch.Tensor) -> torch.Tensor:
    """(B, L, H, d) → (B, H, W, 128, d)."""
    b, n, h, d = x.shape
    return x.view(b, n // WINDOW_TOKENS, WINDOW_TOKENS, h, d).permute(0, 3, 1, 2, 4)


def _from_windows(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 128, d) → (B, L, H, d)."""
    b, h, w, t, d = x.shape
    return x.permute(0, 2, 3, 1, 4).reshape(b, w * t, h, d)


def dense_block_sparse(q: torch.Tensor, parts: Sequence[KVPart]) -> torch.Tensor:
    k, v, mask, columns = join_parts(parts)
    if columns is not None:  # the mask over every window of the keys
        full = mask.new_zeros(*mask.shape[:-1], k.shape[1] // WINDOW_TOKENS)
        full[..., columns.long()] = mask
        mask = full
    b, lq, h, d = q.shape
    lk = k.shape[1]
    t = WINDOW_TOKENS
    token_mask = mask[:, :, :, None, :, None].expand(b, h, lq // t, t, lk // t, t).reshape(b, h, lq, lk)
    scores = (q.transpose(1, 2).float() @ k.transpose(1, 2).float().transpose(-1, -2)) / math.sqrt(d)
    probs = scores.masked_fill(~token_mask, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    return (probs @ v.transpose(1, 2).float()).transpose(1, 2).to(q.dtype)


def gather_block_sparse(q: torch.Tensor, parts: Sequence[KVPart]) -> torch.Tensor:
    k, v, mask, columns = join_parts(parts)
    qw = _as_windows(q)
    b, h, nq, t, d = qw.shape
    counts = mask.sum(dim=-1)
    most = int(counts.max()) if counts.numel() else 0
    out = torch.zeros_like(qw)
    if most == 0:
        return _from_windows(out)
    # selected windows first (in ascending key order), padded with unselected ones
    order = mask.to(torch.uint8).argsort(dim=-1, descending=True, stable=True)[..., :most]
    windows = order if columns is None else columns.long()[order]  # which windows of the keys
    valid = torch.arange(most, device=q.device) < counts[..., None]
    batch, heads = torch.arange(b, device=q.device).view(b, 1, 1, 1), torch.arange(h, device=q.device).view(1, h, 1, 1)
    k5, v5 = k.reshape(b, -1, t, h, d), v.reshape(b, -1, t, h, d)  # (B, windows, 128, H, d): a view, no copy
    per_window = b * h * most * t * (2 * d + t) * 4
    chunk = max(1, GATHER_CHUNK_BYTES // per_window)
    for s in range(0, nq, chunk):
        e = min(nq, s + chunk)
        idx = windows[:, :, s:e]
        kg, vg = k5[batch, idx, :, heads].float(), v5[batch, idx, :, heads].float()  # (b, h, c, most, t, d)
        scores = torch.einsum("bhqtd,bhqmsd->bhqtms", qw[:, :, s:e].float(), kg) / math.sqrt(d)
        scores = scores.masked_fill(~valid[:, :, s:e, None, :, None], float("-inf"))
        probs = scores.flatten(-2).softmax(dim=-1).nan_to_num(0.0).view_as(scores)
        out[:, :, s:e] = torch.einsum("bhqtms,bhqmsd->bhqtd", probs, vg).to(q.dtype)
    return _from_windows(out)


_compiled_flex = None
FLEX_RECOMPILE_LIMIT = 64  # one compile per (query, key) length pair: a few per frame size and cache fill


def _flex():
    from torch.nn.attention.flex_attention import flex_attention

    global _compiled_flex
    if _compiled_flex is None:
        # past torch's default of 8 compiles, flex_attention falls back to an unfused version that
        # materialises the scores and runs out of memory: a process serving several sizes needs more
        dynamo = torch._dynamo.config
        dynamo.recompile_limit = max(dynamo.recompile_limit, FLEX_RECOMPILE_LIMIT)
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


@functools.cache
def _compiled_merge():
    """The merge fused into one kernel (otherwise a handful of float32 passes over the outputs)."""
    return torch.compile(merge_partial_attention, dynamic=False)


def block_mask_from_windows(mask: torch.Tensor, q_len: int, kv_len: int):
    """A FlexAttention BlockMask whose selected 128×128 blocks are all full blocks."""
    from torch.nn.attention.flex_attention import BlockMask

    counts, indices = selected_first(mask)
    # the transposed (query-major) tables serve only the backward pass: skip them where torch can
    forward_only = {"compute_q_blocks": False} if _can_skip_q_blocks() else {}
    return BlockMask.from_kv_blocks(
        torch.zeros_like(counts), indices, counts, indices, BLOCK_SIZE=WINDOW_TOKENS, seq_lengths=(q_len, kv_len),
        **forward_only,
    )  # fmt: skip


@functools.cache
def _can_skip_q_blocks() -> bool:
    from torch.nn.attention.flex_attention import BlockMask

    return "compute_q_blocks" in inspect.signature(BlockMask.from_kv_blocks).parameters


FLEX_TMA_SINCE = (2, 9)  # torch versions whose flex kernels take USE_TMA (ignored where the GPU lacks TMA)


@functools.cache
def flex_kernel_options() -> dict | None:
    """Tensor-memory-accelerator loads on Hopper: the same kernel and numbers, 13 % faster on the
    H100 at 1408×768 (benchmarks/flex_options.py)."""
    version = tuple(int(part) for part in torch.__version__.split(".")[:2])
    return {"USE_TMA": True} if version >= FLEX_TMA_SINCE else None


def flex_block_sparse(q: torch.Tensor, parts: Sequence[KVPart]) -> torch.Tensor:
    qh = q.transpose(1, 2)
    outs, lses = [], []
    for k, v, mask in parts:
        block_mask = block_mask_from_windows(mask, q.shape[1], k.shape[1])
        out, lse = _flex()(qh, k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask, return_lse=True,
                           kernel_options=flex_kernel_options())  # fmt: skip
        outs.append(out)
        lses.append(lse)
    if len(parts) == 1:
        return outs[0].transpose(1, 2)
    return _compiled_merge()(outs, lses).transpose(1, 2)


@functools.cache
def _flash4():
    try:
        from flash_attn.cute import flash_attn_func
        from flash_attn.cute.block_sparsity import BlockSparseTensorsTorch
    except ImportError as error:
        raise ValueError(f"the flash4 attention backend needs FlashAttention-4 (pip install flash-attn-4): {error}") from None
    return flash_attn_func, BlockSparseTensorsTorch


def flash4_tables(mask: torch.Tensor, columns: torch.Tensor | None = None):
    """FlashAttention-4's block-sparse tables for a window mask (its columns mapped to windows of
    the keys by ``columns``): every selected 128×128 block is a full block (no partial blocks, so
    no mask function runs inside the kernel)."""
    _, tables = _flash4()
    counts, indices = selected_first(mask, columns)
    no_partial = torch.zeros_like(counts)
    return tables(no_partial, indices, counts, indices, block_size=(WINDOW_TOKENS, WINDOW_TOKENS))


def flash4_block_sparse(q: torch.Tensor, parts: Sequence[KVPart]) -> torch.Tensor:
    attend, _ = _flash4()
    outs, lses = [], []
    for k, v, mask, *columns in parts:
        tables = flash4_tables(mask, columns[0] if columns else None)
        out, lse = attend(q, k, v, block_sparse_tensors=tables, return_lse=True)  # (B, L, H, d) in and out
        outs.append(out)
        lses.append(lse)
    if len(parts) == 1:
        return outs[0]
    return _compiled_merge()([o.transpose(1, 2) for o in outs], lses).transpose(1, 2)


def merge_partial_attention(outs: list[torch.Tensor], lses: list[torch.Tensor]) -> torch.Tensor:
    """Exact softmax over the union of key sets from per-part outputs and log-sum-exps;
    rows empty in every part stay zero."""
    lse = torch.stack(lses)  # (parts, B, H, L)
    top = lse.amax(dim=0).clamp(min=torch.finfo(lse.dtype).min)
    weights = torch.exp(lse - top)  # exp(−inf) = 0 for parts where a row kept nothing
    total = weights.sum(dim=0).clamp(min=torch.finfo(lse.dtype).tiny)
    merged = sum(o.float() * (w / total)[..., None] for o, w in zip(outs, weights))
    return merged.to(outs[0].dtype)


for _kernel in (dense_block_sparse, gather_block_sparse, flash4_block_sparse):
    _kernel.takes_columns = True  # type: ignore[attr-defined]  # flex's block masks span the keys, so not flex

BACKENDS: dict[str, BlockSparseAttention] = {
    "dense": dense_block_sparse,
    "gather": gather_block_sparse,
    "flex": flex_block_sparse,
    "flash4": flash4_block_sparse,
}
CUDA_ONLY = {"flex", "flash4"}


FLASH4_MIN_CAPABILITY = (9, 0)  # FlashAttention-4's CuTe kernels: Hopper and newer


FLASH4_DTYPES = (torch.bfloat16, torch.float16)  # what its kernels take (fp8 aside)


def flash4_usable(device: torch.device) -> bool:
    """FlashAttention-4 is installed, imports, and the GPU is new enough for it."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FLASH4_MIN_CAPABILITY:
        return False
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        _flash4()
    except ValueError as error:  # installed but broken: say so once, then use flex
        warnings.warn(f"{error}; using the flex attention backend", stacklevel=2)
        return False
    return True


def resolve_backend(
    name: str, device: torch.device | str, *, training: bool = False, dtype: torch.dtype = torch.bfloat16
) -> BlockSparseAttention:
    """The kernel for ``name``. ``auto`` picks, on CUDA, flash4 where FlashAttention-4 is installed
    and usable and the model computes in 16 bits (inference only: training's backward pass through
    it is untested), else flex; gather elsewhere."""
    device = torch.device(device)
    if name == "auto":
        if device.type != "cuda":
            name = "gather"
        else:
            name = "flash4" if not training and dtype in FLASH4_DTYPES and flash4_usable(device) else "flex"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {sorted(BACKENDS)} or 'auto'")
    if name in CUDA_ONLY and device.type != "cuda":
        raise ValueError(f"the {name} attention backend needs a CUDA device; use 'gather' on CPU")
    if name == "flash4":
        if dtype not in FLASH4_DTYPES:
            raise ValueError(f"the flash4 attention backend computes in bfloat16 or float16, not {dtype}; "
                             "use --dtype bfloat16 or the flex backend")  # fmt: skip
        _flash4()  # fail here, with the install hint, rather than inside the first DiT call
    return BACKENDS[name]


def backend_name(kernel: BlockSparseAttention) -> str:
    return next(name for name, fn in BACKENDS.items() if fn is kernel)
