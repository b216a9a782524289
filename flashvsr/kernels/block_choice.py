"""LCSA's block choice on the GPU: the top-k threshold and the attention kernels' block tables.

Per DiT layer, a steady call at 1408×768 chooses blocks for 12 (head, slice) rows of 17,424
probabilities and builds the attention kernel's tables for 792 query windows. In torch these
are a whole-row ``kthvalue`` (12 thread blocks for 0.088 ms, the block choice's largest
kernel on the H100, benchmarks/kernel_options.py) and a dozen small kernels (casts, sums, two
scans, a scatter) per part. On CUDA with Triton each is one kernel; elsewhere, torch's ops.

Both kernels give exactly what their torch forms give (the same threshold value, the same
tables), so masks and outputs are unchanged.
"""

from __future__ import annotations

import torch

from . import HAVE_TRITON, tile_width, use_triton

CHUNK = 4096  # elements a radix-select program reads at once from its row
NUM_WARPS = 8


# --------------------------------------------------------------------------------------------
# The top-k threshold (SPEC §4.5)


def kth_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    """(…, n) → (…, 1): the value that is the (k+1)-th largest of each row (``k`` counts the
    values above it, ties counted by position as a sort would), for 0 ≤ k < n."""
    n = x.shape[-1]
    if not 0 <= k < n:
        raise ValueError(f"k={k} is outside 0…{n - 1} for rows of {n} values")
    if x.dtype == torch.float32 and use_triton("kth_largest", x):
        return _triton_kth_largest(x, k)
    return _torch_kth_largest(x, k)


def _torch_kth_largest(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.kthvalue(x.shape[-1] - k, dim=-1, keepdim=True).values  # the (n−k)-th smallest


def _triton_kth_largest(x: torch.Tensor, k: int, chunk: int = CHUNK, num_warps: int = NUM_WARPS) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty(rows.shape[0], device=x.device, dtype=torch.float32)
    n = rows.shape[1]
    _radix_select[(rows.shape[0],)](rows, out, n, n - k, rows.stride(0), CHUNK=chunk, num_warps=num_warps)
    return out.view(*x.shape[:-1], 1)


# --------------------------------------------------------------------------------------------
# Block tables for the attention kernels


def selected_first(mask: torch.Tensor, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of a (…, K) bool mask: the number of selected entries (int32), and all K indices
    (int32) with the selected ones first, each group in ascending order: a stable sort of
    ~mask, without the sort (each entry's place comes from running counts). With ``columns``
    (K,) int32, column j is written as ``columns[j]`` (a window of a larger pool)."""
    if mask.shape[-1] > 0 and use_triton("selected_first", mask):
        return _triton_selected_first(mask, columns)
    return _torch_selected_first(mask, columns)


def _torch_selected_first(mask: torch.Tensor, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = mask.long()
    counts = chosen.sum(dim=-1, keepdim=True)
    place = torch.where(mask, chosen.cumsum(dim=-1), counts + (1 - chosen).cumsum(dim=-1)) - 1
    if columns is None:
        columns = torch.arange(mask.shape[-1], device=mask.device, dtype=torch.int32)
    order = torch.empty(place.shape, device=mask.device, dtype=torch.int32).scatter_(-1, place, columns.expand_as(place))
    return counts[..., 0].int(), order


def _triton_selected_first(mask: torch.Tensor, columns: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = mask.shape[-1]
    rows = mask.reshape(-1, width)  # a view for a slice of the last dim too
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    counts = torch.empty(rows.shape[0], device=mask.device, dtype=torch.int32)
    order = torch.empty(rows.shape, device=mask.device, dtype=torch.int32)
    block = tile_width(width)
    mapped = columns is not None
    names = columns.int().contiguous() if mapped else counts  # a placeholder pointer when unmapped
    _selected_first[(rows.shape[0],)](rows.view(torch.uint8), names, counts, order, width, rows.stride(0),
                                      MAPPED=mapped, BLOCK=block)  # fmt: skip
    return counts.view(mask.shape[:-1]), order.view(mask.shape)


def _check_kth_largest(device: torch.device) -> None:
    probs = torch.rand(3, 1000, device=device).softmax(-1)
    assert torch.equal(_triton_kth_largest(probs, 450), _torch_kth_largest(probs, 450))


def _check_selected_first(device: torch.device) -> None:
    mask = torch.rand(2, 3, 5, 37, device=device) < 0.4
    names = torch.randperm(500, device=device)[:37].int()
    for columns in (None, names):
        got, want = _triton_selected_first(mask, columns), _torch_selected_first(mask, columns)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


def _check_kth_largest_compiled(device: torch.device) -> None:
    probs = torch.rand(3, 1000, device=device).softmax(-1)
    threshold = torch.compile(lambda x: kth_largest(x, 450), fullgraph=True, dynamic=False)  # as the block choice runs
    assert torch.equal(threshold(probs), _torch_kth_largest(probs, 450))


SELF_CHECKS = {"kth_largest": _check_kth_largest, "selected_first": _check_selected_first}
COMPILED_CHECKS = {"kth_largest": _check_kth_largest_compiled}  # --compile runs it inside the block choice


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

    @triton.jit
    def _selected_first(mask_ptr, names_ptr, counts_ptr, order_ptr, width, row_stride,
                        MAPPED: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
        """One mask row: its count, and each column (or its name) written at its place in the order."""
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        inside = cols < width
        chosen = (tl.load(mask_ptr + row * row_stride + cols, mask=inside, other=0) != 0).to(tl.int32)
        passed = inside.to(tl.int32) - chosen
        count = tl.sum(chosen, 0)
        place = tl.where(chosen != 0, tl.cumsum(chosen, 0), count + tl.cumsum(passed, 0)) - 1
        names = tl.load(names_ptr + cols, mask=inside, other=0) if MAPPED else cols
        tl.store(order_ptr + row * width + place, names, mask=inside)
        tl.store(counts_ptr + row, count)
