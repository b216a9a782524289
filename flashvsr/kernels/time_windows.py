"""The LR projection's conv inputs on the GPU: padded time windows gathered in one pass.

Each of the LR projection's causal 3-D convs runs as a 2-D conv over its input's windows of
``kt`` time steps stacked on channels (``LQProjection``, :func:`time_conv_as_2d`). In torch the
input is built by three copies: the cached history concatenated in front of the clip, the
replicate padding (0.23 ms a call at 1408×768, the largest; benchmarks/results/2026-11-22_h100_s11/
call1_profile_stacks.txt) and the windows stacked on channels. On CUDA one Triton kernel reads
the history and the clip where they lie and writes the stacked windows: the same values
(a copy), about a third of the memory traffic. H100, 2026-12-06 (benchmarks/kernel_options.py
--cases lr_windows, 1408×768): 0.10 ms against 0.43 for the first conv, 0.12 against 0.34 for the second.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import HAVE_TRITON, use_triton

TILE_PIXELS = 16  # output pixels of a row per program
TILE_CHANNELS = 32  # input channels per program (each with its kt steps)


def stacked_time_windows(
    x: torch.Tensor, history: torch.Tensor | None, front: int, kt: int, stride: int, pad: tuple[int, int]
) -> torch.Tensor:
    """The time sequence [``front`` copies of its first step, ``history``, ``x``] of (B, C, T, H, W)
    tensors, replicate-padded by ``pad`` = (rows, columns) on each side, cut into windows of ``kt``
    steps every ``stride`` steps → (B·windows, C·kt, H + 2·rows, W + 2·columns) in channels-last
    memory, channel ``c·kt + j`` holding step j of channel c (as a (out, C, kt, …) weight flattens)."""
    sources = [x] if history is None else [x, history]
    if kt & (kt - 1) == 0 and use_triton("stacked_time_windows", *sources):
        return _triton_stacked(x, history, front, kt, stride, pad)
    return _torch_stacked(x, history, front, kt, stride, pad)


def _torch_stacked(x, history, front, kt, stride, pad):
    if history is not None:
        x = torch.cat([history, x], dim=2)
    x = F.pad(x, (pad[1], pad[1], pad[0], pad[0], front, 0), mode="replicate")
    windows = x.unfold(2, kt, stride)  # (b, c, windows, h, w, kt)
    b, c, steps, h, w, _ = windows.shape
    return windows.permute(0, 2, 3, 4, 1, 5).reshape(b * steps, h, w, c * kt).permute(0, 3, 1, 2)


def _triton_stacked(x, history, front, kt, stride, pad, pixels: int = TILE_PIXELS, channels: int = TILE_CHANNELS):
    b, c, t_x, h, w = x.shape
    t_h = 0 if history is None else history.shape[2]
    steps = (front + t_h + t_x - kt) // stride + 1
    hp, wp = h + 2 * pad[0], w + 2 * pad[1]
    out = torch.empty(b * steps, hp, wp, c * kt, device=x.device, dtype=x.dtype)
    hist = x if history is None else history  # never read when there is none (t_h = 0)
    grid = (b * steps * hp, triton.cdiv(wp, pixels), triton.cdiv(c, channels))
    _stack_windows[grid](
        x, hist, out, c, h, w, t_h, steps, front, stride, pad[0], pad[1],
        *x.stride(), *hist.stride(), KT=kt, BLOCK_W=pixels, BLOCK_C=channels,
    )  # fmt: skip
    return out.permute(0, 3, 1, 2)


def _check_stacked(device: torch.device) -> None:
    clip, history = torch.randn(1, 40, 4, 6, 11, device=device), torch.randn(1, 40, 2, 6, 11, device=device)
    for hist, front in ((None, 2), (history, 0)):
        assert torch.equal(_triton_stacked(clip, hist, front, 4, 2, (1, 1)), _torch_stacked(clip, hist, front, 4, 2, (1, 1)))


COMPILED_CHECKS: dict = {}  # none of these runs inside compiled code
SELF_CHECKS = {"stacked_time_windows": _check_stacked}


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _stack_windows(x_ptr, h_ptr, out_ptr, C, H, W, T_H, STEPS, FRONT, STRIDE, PAD_H, PAD_W,
                       xsb, xsc, xst, xsh, xsw, hsb, hsc, hst, hsh, hsw,
                       KT: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):  # fmt: skip
        """Program (window, output row, pixel block, channel block): a (pixels, channels, kt) tile."""
        row = tl.program_id(0).to(tl.int64)
        hp, wp = H + 2 * PAD_H, W + 2 * PAD_W
        frame, i = row // hp, row % hp
        b, s = frame // STEPS, frame % STEPS
        ws = tl.program_id(1) * BLOCK_W + tl.arange(0, BLOCK_W)
        cs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        js = tl.arange(0, KT)
        yy = tl.minimum(tl.maximum(i - PAD_H, 0), H - 1)  # replicate padding: the nearest row inside
        xx = tl.minimum(tl.maximum(ws - PAD_W, 0), W - 1)
        step = tl.maximum(s * STRIDE + js - FRONT, 0)  # front padding repeats the first step
        in_history = step < T_H
        w3, c3, j3 = xx[:, None, None], cs[None, :, None], step[None, None, :]
        inside = (ws[:, None, None] < wp) & (c3 < C)
        from_history = inside & in_history[None, None, :]
        hv = tl.load(h_ptr + b * hsb + c3 * hsc + j3 * hst + yy * hsh + w3 * hsw, mask=from_history)
        x_step = tl.maximum(j3 - T_H, 0)
        xv = tl.load(x_ptr + b * xsb + c3 * xsc + x_step * xst + yy * xsh + w3 * xsw, mask=inside & ~from_history)
        v = tl.where(from_history, hv, xv)
        dst = ((frame * hp + i) * wp + ws[:, None, None]) * (C * KT) + c3 * KT + js[None, None, :]
        tl.store(out_ptr + dst, v, mask=inside)
