"""The TC decoder's full-resolution memory traffic on the GPU, in channels-last layout.

At 1408×768 each output frame's last nearest 2× upsampling (384×704×128 → 768×1408×128, bf16)
took 0.40 ms as torch's broadcast copy (benchmarks/results/2026-11-22_h100_s11/call1_profile_stacks.txt),
for work bounded by reading 69 MB and writing 277 MB, ≈ 0.1 ms at the H100's bandwidth.

- :func:`upsample2x`: each pixel written as a 2×2 patch, a block of pixels × channels per
  program. A copy: bit-identical to torch's. :func:`frames_from_channel_groups`, the temporal
  growth's regrouping (0.18 ms per 2 frames at 384×704 as torch's strided copy), likewise.
  Measured on the H100 (2026-12-06, benchmarks/kernel_options.py --cases decoder, 1408×768's
  last stage): upsampling 0.15 ms against 0.41, regrouping 0.23 against 0.41.

A Triton 128 → 3 output conv (nine tensor-core products a pixel row) was tried and dropped: cuDNN's
is faster (0.39 ms per frame against 0.61 at best, H100, 2026-12-06, benchmarks/kernel_options.py).
"""

from __future__ import annotations

import torch

from . import HAVE_TRITON, tile_width, use_triton

UPSAMPLE_PIXELS = 16  # pixels of a row per upsampling program (× up to 128 channels)
CHANNELS_PER_TILE = 128  # most channels a program takes at once (more: it loops)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2× upsampling of (N, C, H, W) in channels-last memory; the result keeps it."""
    if _is_channels_last(x) and use_triton("upsample2x", x):
        return _triton_upsample2x(x)
    return _torch_upsample2x(x)


def _torch_upsample2x(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1)[:, :, None, :, None].expand(n, h, 2, w, 2, c)
    return y.reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


def frames_from_channel_groups(y: torch.Tensor, groups: int) -> torch.Tensor:
    """(T, G·C, H, W) channels-last → (T·G, C, H, W) channels-last: channel group j of frame t
    becomes frame t·G + j (the TC decoder's temporal growth). A copy: bit-identical either way."""
    if groups == 1:
        return y
    if _is_channels_last(y) and use_triton("frames_from_channel_groups", y):
        return _triton_frames_from_channel_groups(y, groups)
    return _torch_frames_from_channel_groups(y, groups)


def _torch_frames_from_channel_groups(y: torch.Tensor, groups: int) -> torch.Tensor:
    t, gc, h, w = y.shape
    c = gc // groups
    y = y.permute(0, 2, 3, 1).reshape(t, h, w, groups, c).permute(0, 3, 1, 2, 4)
    return y.reshape(t * groups, h, w, c).contiguous().permute(0, 3, 1, 2)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last)


def _triton_upsample2x(x: torch.Tensor, pixels: int = UPSAMPLE_PIXELS, num_warps: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    y = torch.empty(n, c, 2 * h, 2 * w, device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    block_c = tile_width(c, CHANNELS_PER_TILE)
    grid = (n * h, triton.cdiv(w, pixels), triton.cdiv(c, block_c))
    _upsample2x[grid](x, y, h, w, c, BLOCK_W=pixels, BLOCK_C=block_c, num_warps=num_warps)
    return y


def _triton_frames_from_channel_groups(y: torch.Tensor, groups: int, pixels: int = UPSAMPLE_PIXELS) -> torch.Tensor:
    t, gc, h, w = y.shape
    c = gc // groups
    out = torch.empty(t * groups, c, h, w, device=y.device, dtype=y.dtype, memory_format=torch.channels_last)
    block_c = tile_width(c, CHANNELS_PER_TILE)
    grid = (t * groups, triton.cdiv(h * w, pixels), triton.cdiv(c, block_c))
    _regroup[grid](y, out, h * w, c, groups, BLOCK_P=pixels, BLOCK_C=block_c)
    return out


def _check_upsample2x(device: torch.device) -> None:
    x = torch.randn(1, 40, 5, 19, device=device).bfloat16().contiguous(memory_format=torch.channels_last)
    assert torch.equal(_triton_upsample2x(x), _torch_upsample2x(x))


def _check_frames_from_channel_groups(device: torch.device) -> None:
    y = torch.randn(2, 80, 5, 19, device=device).bfloat16().contiguous(memory_format=torch.channels_last)
    assert torch.equal(_triton_frames_from_channel_groups(y, 2), _torch_frames_from_channel_groups(y, 2))


COMPILED_CHECKS: dict = {}  # none of these runs inside compiled code
SELF_CHECKS = {
    "upsample2x": _check_upsample2x,
    "frames_from_channel_groups": _check_frames_from_channel_groups,
}


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _upsample2x(x_ptr, y_ptr, H, W, C, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
        """Program (image row, pixel block, channel block): read the block once, write it 4 times."""
        row = tl.program_id(0).to(tl.int64)  # n·H + y
        n, y = row // H, row % H
        xs = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        inside = (xs[:, None] < W) & (cs[None, :] < C)
        v = tl.load(x_ptr + (row * W + xs[:, None]) * C + cs[None, :], mask=inside)
        for dy in tl.static_range(2):
            out_row = n * 2 * H + 2 * y + dy
            for dx in tl.static_range(2):
                tl.store(y_ptr + (out_row * 2 * W + 2 * xs[:, None] + dx) * C + cs[None, :], v, mask=inside)

    @triton.jit
    def _regroup(y_ptr, out_ptr, P, C, G, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
        """Program (output frame t·G + j, pixel block, channel block): channels [j·C, (j+1)·C) of frame t."""
        frame = tl.program_id(0).to(tl.int64)
        t, j = frame // G, frame % G
        ps = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        inside = (ps[:, None] < P) & (cs[None, :] < C)
        v = tl.load(y_ptr + (t * P + ps[:, None]) * (G * C) + j * C + cs[None, :], mask=inside)
        tl.store(out_ptr + (frame * P + ps[:, None]) * C + cs[None, :], v, mask=inside)
