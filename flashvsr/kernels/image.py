"""The TC decoder's full-resolution memory traffic on the GPU, in channels-last layout.

At 1408×768 each output frame's last nearest 2× upsampling (384×704×128 → 768×1408×128, bf16)
took 0.40 ms as torch's broadcast copy and the 128 → 3 output conv 0.37 ms in cuDNN
(benchmarks/results/2026-11-22_h100_s11/call1_profile_stacks.txt): about 6 ms per 8 frames, for
work bounded by reading 69 + 277 MB and 277 MB, ≈ 0.1 ms each at the H100's bandwidth.

- :func:`upsample2x`: each pixel written as a 2×2 patch, a block of pixels × channels per
  program. A copy: bit-identical to torch's. :func:`frames_from_channel_groups`, the temporal
  growth's regrouping (0.18 ms per 2 frames at 384×704 as torch's strided copy), likewise.
- :func:`conv3x3_narrow`: a 3×3 conv (padding 1) with few outputs, as nine tensor-core products
  of a row of pixels' channels with the tap's weights, accumulated in float32, plus the bias,
  rounded once. The same sums as cuDNN's in another order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import HAVE_TRITON, tile_width, use_triton

UPSAMPLE_PIXELS = 16  # pixels of a row per upsampling program (× up to 128 channels)
NARROW_OUTPUTS = 16  # the conv's outputs padded to the smallest tensor-core tile
NARROW_PIXELS = 64  # output pixels of a row per conv program
CHANNELS_PER_TILE = 128  # most channels a program takes at once (more: it loops)
HALF_DTYPES = (torch.bfloat16, torch.float16)  # float32 products would run as TF32 on tensor cores
BF16_HALF_ULP = 2.0**-8  # relative rounding error of bfloat16


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


def conv3x3_narrow(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=1)`` for a channels-last (N, C, H, W) input and at most
    16 outputs; the result is channels-last."""
    usable = weight.shape[0] <= NARROW_OUTPUTS and x.dtype in HALF_DTYPES and _is_channels_last(x)
    if usable and use_triton("conv3x3_narrow", x, weight, *([] if bias is None else [bias])):
        return _triton_conv3x3_narrow(x, weight, bias)
    return F.conv2d(x, weight, bias, padding=1)


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


def packed_taps(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) → (9, in, 16): each tap's (in × out) matrix, outputs zero-padded to a tile."""
    c_out, c_in = weight.shape[:2]
    taps = weight.permute(2, 3, 1, 0).reshape(9, c_in, c_out)
    return F.pad(taps, (0, NARROW_OUTPUTS - c_out)).contiguous()


def _triton_conv3x3_narrow(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pixels: int = NARROW_PIXELS, num_warps: int = 4
) -> torch.Tensor:
    n, c, h, w = x.shape
    c_out = weight.shape[0]
    taps = packed_taps(weight.to(x.dtype))
    bias = torch.zeros(c_out, device=x.device) if bias is None else bias.float()
    y = torch.empty(n, c_out, h, w, device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    block_k = tile_width(c, CHANNELS_PER_TILE)
    grid = (n * h, triton.cdiv(w, pixels))
    _conv3x3_narrow[grid](x, taps, bias, y, h, w, c, c_out, BLOCK_P=pixels, BLOCK_K=block_k, N_PAD=NARROW_OUTPUTS,
                          num_warps=num_warps)  # fmt: skip
    return y


def _check_upsample2x(device: torch.device) -> None:
    x = torch.randn(1, 40, 5, 19, device=device).bfloat16().contiguous(memory_format=torch.channels_last)
    assert torch.equal(_triton_upsample2x(x), _torch_upsample2x(x))


def _check_frames_from_channel_groups(device: torch.device) -> None:
    y = torch.randn(2, 80, 5, 19, device=device).bfloat16().contiguous(memory_format=torch.channels_last)
    assert torch.equal(_triton_frames_from_channel_groups(y, 2), _torch_frames_from_channel_groups(y, 2))


def _check_conv3x3_narrow(device: torch.device) -> None:
    x = torch.randn(1, 128, 6, 70, device=device).bfloat16().contiguous(memory_format=torch.channels_last)
    w, b = (torch.randn(3, 128, 3, 3, device=device) * 0.09).bfloat16(), torch.randn(3, device=device).bfloat16()
    exact = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    error = (_triton_conv3x3_narrow(x, w, b).double() - exact).abs().max()
    assert error <= exact.abs().max() * BF16_HALF_ULP * 2, float(error)  # rounded once (a margin of 2)


COMPILED_CHECKS: dict = {}  # none of these runs inside compiled code
SELF_CHECKS = {
    "upsample2x": _check_upsample2x,
    "frames_from_channel_groups": _check_frames_from_channel_groups,
    "conv3x3_narrow": _check_conv3x3_narrow,
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

    @triton.jit
    def _conv3x3_narrow(x_ptr, w_ptr, b_ptr, y_ptr, H, W, C, C_OUT,
                        BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, N_PAD: tl.constexpr):  # fmt: skip
        """Program (image row, pixel block): Σ over taps and channel blocks of (pixels × channels)
        · (channels × outputs), zero outside the image (padding 1)."""
        row = tl.program_id(0).to(tl.int64)  # n·H + y
        n, y = row // H, row % H
        xs = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        outs = tl.arange(0, N_PAD)
        acc = tl.zeros((BLOCK_P, N_PAD), dtype=tl.float32)
        for tap in tl.static_range(9):
            yy = tl.zeros_like(xs) + (y + tap // 3 - 1)  # a row of the same index: masks stay tensors
            xx = xs + tap % 3 - 1
            pixel_ok = (yy >= 0) & (yy < H) & (xx >= 0) & (xx < W)
            src = (n * H + yy) * W + xx
            for k0 in range(0, C, BLOCK_K):
                ks = k0 + tl.arange(0, BLOCK_K)
                a = tl.load(x_ptr + src[:, None] * C + ks[None, :], mask=pixel_ok[:, None] & (ks[None, :] < C), other=0.0)
                b = tl.load(w_ptr + (tap * C + ks[:, None]) * N_PAD + outs[None, :], mask=ks[:, None] < C, other=0.0)
                acc += tl.dot(a, b)
        acc += tl.load(b_ptr + outs, mask=outs < C_OUT, other=0.0)[None, :]
        keep = (xs[:, None] < W) & (outs[None, :] < C_OUT)
        tl.store(y_ptr + (row * W + xs[:, None]) * C_OUT + outs[None, :], acc.to(y_ptr.dtype.element_ty), mask=keep)
