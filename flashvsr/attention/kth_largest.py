"""The k-th largest value of each row, exactly: LCSA's top-k threshold (SPEC §4.5).

A steady call at 1408×768 asks this of 12 rows of 17,424 probabilities per layer. ``kthvalue``
gives 12 thread blocks a whole-row radix select each and took 0.088 of the block choice's
≈ 0.13 ms of kernels per layer on the H100 (benchmarks/kernel_options.py). On CUDA with Triton,
one program per row runs the same radix select over the row's float bits, 8 bits a pass, with
a histogram per pass: four reads of a row that stays in cache. Elsewhere it is ``kthvalue``.

Both return the very value of the row that has the requested rank, so the masks are identical.
"""

from __future__ import annotations

import importlib.util

import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None
RADIX_BITS = 8  # one pass per byte of the float's bits: 4 passes, 256-bin histograms
CHUNK = 4096  # elements a program reads at once from its row
NUM_WARPS = 8


def kth_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """(…, n) → (…, 1): the value that is the (k+1)-th largest of each row (``k`` counts the
    values above it, ties counted by position as a sort would), for 0 ≤ k < n."""
    n = x.shape[-1]
    if not 0 <= k < n:
        raise ValueError(f"k={k} is outside 0…{n - 1} for rows of {n} values")
    if use_triton(x):
        return _triton_kth_largest(x, k)
    return x.kthvalue(n - k, dim=-1, keepdim=True).values


def use_triton(x: torch.Tensor) -> bool:
    return HAVE_TRITON and x.is_cuda and x.dtype == torch.float32


def _triton_kth_largest(x: torch.Tensor, k: int, chunk: int = CHUNK, num_warps: int = NUM_WARPS) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty(rows.shape[0], device=x.device, dtype=torch.float32)
    n = rows.shape[1]
    _radix_select[(rows.shape[0],)](rows, out, n, n - k, rows.stride(0), CHUNK=chunk, num_warps=num_warps)
    return out.view(*x.shape[:-1], 1)


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _ordered_key(v):
        """float32 → uint32 whose unsigned order is the floats' order."""
        bits = v.to(tl.uint32, bitcast=True)
        negative = (bits >> 31) != 0
        return tl.where(negative, ~bits, bits | 0x80000000)

    @triton.jit
    def _float_of_key(key):
        bits = tl.where((key >> 31) != 0, key & 0x7FFFFFFF, ~key)
        return bits.to(tl.float32, bitcast=True)

    @triton.jit
    def _radix_select(x_ptr, out_ptr, n, rank, row_stride, CHUNK: tl.constexpr):
        """out[row] = the ``rank``-th smallest (1-based) of x[row, :n]: most significant byte
        first, each pass keeps the bucket holding that rank among the values still matching."""
        row = tl.program_id(0).to(tl.int64)
        base = x_ptr + row * row_stride
        bins = tl.arange(0, 256)
        prefix = tl.full((), 0, tl.uint32)  # the answer's bytes found so far
        known = tl.full((), 0, tl.uint32)  # which bits of the prefix are found
        remaining = rank  # the answer's rank among the values that match the prefix
        for p in tl.static_range(4):
            shift = 24 - 8 * p
            counts = tl.zeros((256,), dtype=tl.int32)
            for start in range(0, n, CHUNK):
                offs = start + tl.arange(0, CHUNK)
                inside = offs < n
                key = _ordered_key(tl.load(base + offs, mask=inside, other=0.0))
                matching = inside & ((key & known) == prefix)
                counts += tl.histogram(((key >> shift) & 0xFF).to(tl.int32), 256, mask=matching)
            below_or_at = tl.cumsum(counts, 0)
            digit = tl.sum((below_or_at < remaining).to(tl.int32), 0)  # first bin reaching the rank
            remaining -= tl.sum(tl.where(bins < digit, counts, 0), 0)
            prefix |= digit.to(tl.uint32) << shift
            known |= tl.full((), 0xFF, tl.uint32) << shift
        tl.store(out_ptr + row, _float_of_key(prefix))
