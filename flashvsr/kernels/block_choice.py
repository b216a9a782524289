"""The attention kernels' block tables on the GPU.

Per DiT layer, a steady call at 1408×768 builds the attention kernel's tables for 792 query
windows: a dozen small kernels in torch (casts, sums, two scans, a scatter), one Triton kernel
on CUDA, with exactly the same tables. (The top-k threshold before them is torch's own
selection: attention/masks.py ``kth_largest``; a Triton radix select lost to it on the H100.)
"""

from __future__ import annotations

import torch

from . import HAVE_TRITON, tile_width, use_triton


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


def _check_selected_first(device: torch.device) -> None:
    mask = torch.rand(2, 3, 5, 37, device=device) < 0.4
    names = torch.randperm(500, device=device)[:37].int()
    for columns in (None, names):
        got, want = _triton_selected_first(mask, columns), _torch_selected_first(mask, columns)
        assert all(torch.equal(a, b) for a, b in zip(got, want))


SELF_CHECKS = {"selected_first": _check_selected_first}
COMPILED_CHECKS: dict = {}  # the tables are built outside compiled code


if HAVE_TRITON:
    import triton
    import triton.language as tl

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
