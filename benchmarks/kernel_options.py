"""Device probe (issue 4, session 11): single-op alternatives for the parts of the 1408×768 profile
that are not matrix work (benchmarks/results/2026-11-22_h100_s11/call1_profile_stacks.txt), each
timed against the op it would replace, with the largest difference between their outputs.

    python benchmarks/kernel_options.py [--height 768 --width 1408] [--json OUT.jsonl] [--cases upsample ffn …]

- ``head_relu``: the TC decoder's full-resolution conv + in-place ReLU, or cuDNN's fused conv-ReLU.
- ``last_conv``: its 128 → 3 output conv, or the same weights padded with zero outputs to 8 / 16 (a
  Triton kernel for it was tried: 0.61 ms at best against cuDNN's 0.39, 2026-12-06); ``upsample``: the nearest 2× upsampling before it as
  torch's broadcast copy, ``interpolate``, or this project's Triton kernel (case ``upsample_last``);
  the temporal growth's regrouping copy, or its Triton kernel (``regroup_last``).
- ``upsample_conv``: its last nearest 2× upsampling (a copy) then the head conv + ReLU, or one
  transposed conv (``upsampled_conv``) + ReLU.
- ``lr_conv1`` / ``lr_conv2``: the LR projection's time convs as 2-D convs (weights flattened on
  each call, NCHW), with the 2-D weights stored channels-last once, or as unfold + one matmul.
- ``lr_windows``: those convs' inputs (history + clip, replicate-padded, stacked on channels) by
  torch's three copies or this project's Triton gather.
- ``rope``: the DiT's query/key RMS norm + RoPE compiled by Inductor, or this project's Triton pass.
- ``topk``: LCSA's per-slice threshold (the (k+1)-th largest) by unsorted top-k, kthvalue, sort,
  and as the project picks it (``kth_largest``); benchmarks/topk_threshold.py tries more sizes.
- ``ffn_gelu``: the FFN's first linear then GELU(tanh), or cuBLASLt's GELU epilogue (and in float32,
  which GELU that epilogue computes).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.attention.masks import kth_largest, topk_count, window_grid  # noqa: E402
from flashvsr.config import SPARSE_REFERENCE_PIXELS, LQProjConfig  # noqa: E402
from flashvsr.kernels import HAVE_TRITON  # noqa: E402
from flashvsr.kernels.rope import rms_norm_rope  # noqa: E402
from flashvsr.kernels.time_windows import _torch_stacked, _triton_stacked  # noqa: E402
from flashvsr.kernels.image import (  # noqa: E402
    _torch_frames_from_channel_groups,
    _torch_upsample2x,
    _triton_frames_from_channel_groups,
    _triton_upsample2x,
)
from flashvsr.models.tc_decoder import conv_relu  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flex_options import time_ms  # noqa: E402

DEV, BF16 = torch.device("cuda"), torch.bfloat16


def randn(*shape, scale=1.0, layout=torch.contiguous_format):
    return (torch.randn(*shape, device=DEV) * scale).to(BF16).contiguous(memory_format=layout)


def compare(name: str, variants: dict, rows: list, iters: int) -> None:
    """Time each variant (a no-argument function) and report its output's largest difference
    from the first variant's."""
    reference = None
    for label, fn in variants.items():
        with torch.no_grad():
            out = fn().float()
            ms = time_ms(fn, iters)
        reference = out if reference is None else reference
        diff = (out - reference).abs().max().item() if out.shape == reference.shape else float("nan")
        row = {"case": name, "variant": label, "ms": round(ms, 4), "max_abs_diff": diff,
               "ref_abs_max": reference.abs().max().item()}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)


def decoder_cases(h: int, w: int, rows: list, iters: int) -> None:
    cl = torch.channels_last
    x = randn(1, 128, h, w, layout=cl).relu()
    head = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(DEV, BF16).to(memory_format=cl)
    compare("head_relu", {
        "conv+relu_": lambda: F.relu_(head(x)),
        "cudnn_convolution_relu": lambda: conv_relu(head, x),
    }, rows, iters)  # fmt: skip
    last, bias = randn(3, 128, 3, 3, scale=0.03, layout=cl), randn(3, scale=0.1)

    def padded(n):
        wp = torch.cat([last, last.new_zeros(n - 3, *last.shape[1:])]).contiguous(memory_format=cl)
        bp = torch.cat([bias, bias.new_zeros(n - 3)])
        return lambda: F.conv2d(x, wp, bp, padding=1)[:, :3]

    ways = {"3 outputs": lambda: F.conv2d(x, last, bias, padding=1), "padded to 8": padded(8),
            "padded to 16": padded(16)}  # fmt: skip
    compare("last_conv", ways, rows, iters)
    low = randn(1, 128, h // 2, w // 2, layout=cl)
    ways = {"broadcast copy": lambda: _torch_upsample2x(low),
            "interpolate": lambda: F.interpolate(low, scale_factor=2, mode="nearest")}  # fmt: skip
    if HAVE_TRITON:
        for pixels in (8, 16, 32):
            for warps in (2, 4, 8):
                ways[f"triton {pixels} px × {warps} warps"] = functools.partial(_triton_upsample2x, low, pixels, warps)
    compare("upsample_last", ways, rows, iters)
    grown = randn(2, 256, h // 2, w // 2, layout=cl)  # the last temporal growth's output, 2 frames
    ways = {"strided copy": lambda: _torch_frames_from_channel_groups(grown, 2)}
    if HAVE_TRITON:
        ways["triton"] = lambda: _triton_frames_from_channel_groups(grown, 2)
    compare("regroup_last", ways, rows, iters)


# Nearest 2× upsampling then a 3×3 conv (padding 1) equals a stride-2 transposed conv with a 4×4
# kernel: along each axis its taps 0…3 are (w₂, w₁+w₂, w₀+w₁, w₀). Exact in float64; 2.25× fewer
# multiply-adds and no upsampled copy, but cuDNN runs it slower here (session 11: not kept).
UPSAMPLED_TAPS = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))


def upsampled_conv(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    taps = torch.tensor(UPSAMPLED_TAPS, dtype=torch.float32, device=x.device)
    kernel = torch.einsum("ya,oiab,xb->ioyx", taps, conv.weight.float(), taps).to(conv.weight.dtype)
    return F.conv_transpose2d(x, kernel.contiguous(memory_format=torch.channels_last), conv.bias, stride=2, padding=1)


def upsample_cases(h: int, w: int, rows: list, iters: int) -> None:
    """The decoder's last upsampling and the head conv after it, per frame (official sizes)."""
    cl = torch.channels_last
    x = randn(1, 128, h // 2, w // 2, layout=cl).relu()
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).to(DEV, BF16).to(memory_format=cl)

    def upsample_then_conv():
        n, c, hh, ww = x.shape
        up = x.permute(0, 2, 3, 1)[:, :, None, :, None].expand(n, hh, 2, ww, 2, c).reshape(n, 2 * hh, 2 * ww, c)
        return F.relu_(F.conv2d(up.permute(0, 3, 1, 2), conv.weight, padding=1))

    compare("upsample_conv", {
        "upsample copy + conv + relu": upsample_then_conv,
        "transposed conv + relu": lambda: F.relu_(upsampled_conv(conv, x)),
    }, rows, iters)  # fmt: skip


def lr_cases(h: int, w: int, rows: list, iters: int) -> None:
    cfg = LQProjConfig()
    gh, gw = h // cfg.unshuffle + 2, w // cfg.unshuffle + 2  # replicate-padded by one on each side
    kt = cfg.kernel[0]
    for name, c_in, c_out, steps in (("lr_conv1", cfg.unshuffled_channels, cfg.hidden1, 2),
                                     ("lr_conv2", cfg.hidden1, cfg.hidden2, 1)):  # fmt: skip
        weight = randn(c_out, c_in, kt, 3, 3, scale=1 / (c_in * kt * 9) ** 0.5)
        bias = randn(c_out, scale=0.1)
        # the stacked input as time_conv_as_2d builds it: channels-last (steps, c_in·kt, gh, gw)
        stacked = randn(steps, gh, gw, c_in * kt).permute(0, 3, 1, 2)
        stored = weight.flatten(1, 2).contiguous(memory_format=torch.channels_last)

        def as_matmul():
            cols = F.unfold(stacked, 3)  # (steps, c_in·kt·9, pixels)
            out = torch.baddbmm(bias[None, :, None], weight.flatten(1).expand(steps, -1, -1), cols)
            return out.unflatten(-1, (gh - 2, gw - 2))

        compare(name, {
            "flattened per call": lambda: F.conv2d(stacked, weight.flatten(1, 2), bias),
            "stored channels-last": lambda: F.conv2d(stacked, stored, bias),
            "unfold + matmul": as_matmul,
        }, rows, iters)  # fmt: skip


def lr_window_cases(h: int, w: int, rows: list, iters: int) -> None:
    """The LR projection's conv inputs (history + clip, padded, stacked on channels) per clip."""
    cfg = LQProjConfig()
    gh, gw = h // cfg.unshuffle, w // cfg.unshuffle
    clip = randn(1, cfg.unshuffled_channels, 4, gh, gw)  # as the unshuffle leaves it
    conv1_out = randn(2, gh, gw, cfg.hidden1).permute(0, 3, 1, 2).unflatten(0, (1, 2)).transpose(1, 2)
    for name, x, hist in (("lr_windows_conv1", clip, clip[:, :, -2:].clone()),
                          ("lr_windows_conv2", conv1_out, conv1_out[:, :, -2:].clone())):  # fmt: skip
        ways = {"cat + pad + stack": functools.partial(_torch_stacked, x, hist, 0, 4, 2, (1, 1))}
        if HAVE_TRITON:
            ways["triton"] = functools.partial(_triton_stacked, x, hist, 0, 4, 2, (1, 1))
        compare(name, ways, rows, iters)


def rope_cases(tokens: int, rows: list, iters: int) -> None:
    """The DiT's query/key RMS norm + RoPE for one call's tokens: compiled by Inductor (as the
    compiled DiT did before) or this project's Triton pass."""
    from flashvsr.models.dit import RMSNorm, apply_rope

    norm = RMSNorm(1536, 1e-6).to(DEV, BF16)
    x = randn(1, tokens, 1536, scale=3.0)
    angles = torch.rand(tokens, 64, device=DEV) * 6.3
    cos, sin = angles.cos(), angles.sin()
    reference = torch.compile(lambda t: apply_rope(norm(t).unflatten(-1, (12, -1)), cos, sin), dynamic=False)
    ways = {"inductor": lambda: reference(x)}
    if HAVE_TRITON:
        for tokens_per_program in (1, 2, 4):
            ways[f"triton {tokens_per_program} tokens"] = functools.partial(
                rms_norm_rope, x, norm.weight, norm.eps, cos, sin, 12, tokens_per_program)  # fmt: skip
    compare("rms_norm_rope", ways, rows, iters)


def topk_cases(h: int, w: int, rows: list, iters: int) -> None:
    windows = window_grid(h // 16, w // 16)[0] * window_grid(h // 16, w // 16)[1]
    k = topk_count(windows, 2.0 * SPARSE_REFERENCE_PIXELS / (h * w))  # sparse ratio 2
    probs = torch.rand(1, 12, 1, windows * windows * 4, device=DEV).softmax(-1)  # a slice against four
    n = probs.shape[-1]
    ways = {
        "topk unsorted + amin": lambda: probs.topk(k + 1, dim=-1, sorted=False).values.amin(-1),
        "kthvalue": lambda: probs.kthvalue(n - k, dim=-1).values,
        "sort": lambda: probs.sort(dim=-1, descending=True).values[..., k],
        "kth_largest": lambda: kth_largest(probs, k).squeeze(-1),
    }
    compare("topk", ways, rows, iters)


def ffn_cases(tokens: int, rows: list, iters: int) -> None:
    x = randn(tokens, 1536)
    weight, bias = randn(8960, 1536, scale=1536**-0.5), randn(8960, scale=0.02)
    compare("ffn_gelu", {
        "linear + gelu": lambda: F.gelu(F.linear(x, weight, bias), approximate="tanh"),
        "addmm gelu epilogue": lambda: torch._addmm_activation(bias, x, weight.t(), use_gelu=True),
    }, rows, iters)  # fmt: skip
    # which GELU the epilogue is: in float32 tanh's approximation and erf differ visibly (≈ 1e-4)
    x32, w32, b32 = x.float(), weight.float(), bias.float()
    compare("ffn_gelu_float32", {
        "addmm gelu epilogue": lambda: torch._addmm_activation(b32, x32, w32.t(), use_gelu=True),
        "linear + gelu tanh": lambda: F.gelu(F.linear(x32, w32, b32), approximate="tanh"),
        "linear + gelu erf": lambda: F.gelu(F.linear(x32, w32, b32)),
    }, rows, iters)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1408)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--cases", nargs="*", choices=["decoder", "upsample", "lr", "lr_windows", "rope", "topk", "ffn"],
                        help="groups to run (default: all)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    rows: list = []
    groups = {
        "decoder": lambda: decoder_cases(args.height, args.width, rows, args.iters),
        "upsample": lambda: upsample_cases(args.height, args.width, rows, args.iters),
        "lr": lambda: lr_cases(args.height, args.width, rows, args.iters),
        "lr_windows": lambda: lr_window_cases(args.height, args.width, rows, args.iters),
        "rope": lambda: rope_cases(2 * (args.height // 16) * (args.width // 16), rows, args.iters),
        "topk": lambda: topk_cases(args.height, args.width, rows, args.iters),
        "ffn": lambda: ffn_cases(2 * (args.height // 16) * (args.width // 16), rows, args.iters),
    }
    for name in args.cases or groups:
        groups[name]()
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
