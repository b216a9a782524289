"""This project's Triton kernels give what their torch forms give: exactly for the attention
kernels' block tables, the decoder's upsampling and regrouping and the LR projection's stacked
windows; within rounding for the DiT's query/key norm + rotation (exact in float16).

The kernels run on the CPU in Triton's interpreter (a subprocess, since the interpreter is chosen
when a kernel is defined; its bfloat16 products and casts are wrong, so those kernels are
checked in float16 there) and, on a GPU, compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flashvsr.attention import masks
from flashvsr.kernels import HAVE_TRITON
from flashvsr.kernels.block_choice import selected_first
from flashvsr.kernels.image import frames_from_channel_groups, upsample2x
from flashvsr.kernels.time_windows import stacked_time_windows


def reference(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.kthvalue(x.shape[-1] - k, dim=-1, keepdim=True).values


def test_a_kernel_whose_check_fails_is_turned_off_and_said_so(monkeypatch):
    """On a GPU each kernel first runs once against its torch form; one that fails to compile or
    differs is replaced by torch's ops for the process, with a warning naming it."""
    from flashvsr import kernels
    from flashvsr.kernels import block_choice, image, rope, time_windows

    def broken(device):
        raise RuntimeError("PTX assembly aborted")

    def differs(device):
        raise AssertionError("2 of 48 values differ\nfirst at (0, 3)")

    def fails_compiled(device):
        raise RuntimeError("Unsupported: user-defined triton kernel")

    for module in (image, rope, time_windows):
        monkeypatch.setattr(module, "SELF_CHECKS", {})
        monkeypatch.setattr(module, "COMPILED_CHECKS", {})
    monkeypatch.setattr(block_choice, "SELF_CHECKS", {"fine": lambda device: None, "broken": broken, "wrong": differs})
    monkeypatch.setattr(block_choice, "COMPILED_CHECKS", {"fine": fails_compiled})
    monkeypatch.setattr(kernels, "HAVE_TRITON", True)
    monkeypatch.setattr(kernels, "turned_off", set())
    problems = kernels.check_kernels.__wrapped__(torch.device("cuda"))  # no GPU is touched: the checks are fakes
    assert kernels.turned_off == {"broken", "wrong"}
    assert problems == (
        "Triton kernel broken turned off (RuntimeError: PTX assembly aborted); torch's ops serve",
        "Triton kernel wrong turned off (AssertionError: 2 of 48 values differ); torch's ops serve",
    )
    # with --compile, a kernel that runs inside compiled code must also survive torch.compile
    assert kernels.check_kernels.__wrapped__(torch.device("cuda"), compiled=True) == (
        "Triton kernel fine turned off (RuntimeError: Unsupported: user-defined triton kernel); torch's ops serve",
    )
    assert kernels.turned_off == {"broken", "wrong", "fine"}
    assert kernels.check_kernels.__wrapped__(torch.device("cpu")) == ()  # nothing to check without a GPU


# Block tables as LCSA makes them: a steady call's 12 heads × 66 query windows over 264 key
# windows (1408×768), as a slice of each row and whole, all or none chosen, one column, a pool's names.
BLOCK_CHOICE_CASES = textwrap.dedent(
    """
    import torch
    from flashvsr.kernels import block_choice as K

    g = torch.Generator().manual_seed(0)

    def check_tables(mask, columns=None):
        want = K.selected_first(mask.cpu(), columns)  # the torch form: the mask is on the CPU
        got = K._triton_selected_first(mask, columns)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), mask.shape

    selected = torch.rand(1, 12, 66, 264, generator=g) < 0.45  # a steady call's [cached, current] windows
    check_tables(selected[..., 198:])  # the current part: a slice of each row
    check_tables(selected[..., :198].contiguous())
    for density in (0.0, 1.0):
        check_tables(torch.rand(2, 3, 5, 37, generator=g) < density)
    check_tables(torch.rand(4, 1, generator=g) < 0.5)
    check_tables(selected, torch.randperm(6006, generator=g)[:264].int())  # windows of a KV pool
    print("ok")
    """
)


# The decoder's kernels on channels-last frames: odd sizes, channels that are not a power of two.
IMAGE_CASES = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from flashvsr.kernels import image as K

    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last
    for dtype in (torch.float32, torch.bfloat16):
        for shape in ((2, 40, 5, 19), (1, 128, 3, 33)):
            x = torch.randn(*shape, generator=g).to(dtype).contiguous(memory_format=cl)
            got = K._triton_upsample2x(x)
            assert got.is_contiguous(memory_format=cl)
            assert torch.equal(got, K.upsample2x(x)), shape  # the torch form: x is on the CPU
            assert torch.equal(got, F.interpolate(x.contiguous(), scale_factor=2, mode="nearest"))
    for t, groups, c in ((1, 2, 128), (2, 2, 40), (3, 4, 16)):
        y = torch.randn(t, groups * c, 5, 19, generator=g).to(torch.bfloat16).contiguous(memory_format=cl)
        got = K._triton_frames_from_channel_groups(y, groups)
        want = y.contiguous().reshape(t * groups, c, 5, 19)  # NCHW: group j of frame t is frame t·G + j
        assert got.is_contiguous(memory_format=cl) and torch.equal(got, want), (t, groups, c)
        assert torch.equal(K.frames_from_channel_groups(y, groups), want)
    print("ok")
    """
)

# The LR projection's stacked time windows: a clip as the unshuffle leaves it (NCDHW) with front
# padding, with its cached history, a channels-last conv output as the next conv's input, a batch.
TIME_WINDOW_CASES = textwrap.dedent(
    """
    import torch
    from flashvsr.kernels import time_windows as K

    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 40, 4, 6, 11, generator=g).to(torch.bfloat16)
    conv_out = torch.randn(2, 48, 6, 11, generator=g).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    y = conv_out.unflatten(0, (1, 2)).transpose(1, 2)  # (1, 48, 2, 6, 11), channels innermost
    batch = torch.randn(2, 40, 5, 6, 11, generator=g)
    cases = [(x, None, 2), (x, torch.randn(1, 40, 2, 6, 11, generator=g).to(torch.bfloat16), 0),
             (y, y[:, :, -2:].clone(), 0), (batch[:, :, 2:], batch[:, :, :2], 1)]
    for clip, history, front in cases:
        got = K._triton_stacked(clip, history, front, 4, 2, (1, 1))
        want = K.stacked_time_windows(clip, history, front, 4, 2, (1, 1))  # the torch form: on the CPU
        assert got.is_contiguous(memory_format=torch.channels_last) and torch.equal(got, want), clip.shape
    print("ok")
    """
)

# The DiT's query/key norm + rotation against the model's own RMSNorm and apply_rope (float16: the
# interpreter's casts to bfloat16 do not round to nearest), several heads, a ragged token count.
ROPE_CASES = textwrap.dedent(
    """
    import torch
    from flashvsr.kernels import rope as K
    from flashvsr.models.dit import RMSNorm, apply_rope

    g = torch.Generator().manual_seed(0)
    for batch, tokens, heads, d in ((2, 13, 8, 32), (1, 5, 12, 128)):
        norm = RMSNorm(heads * d, 1e-6).half()
        norm.weight.data += (0.1 * torch.randn(heads * d, generator=g)).half()
        x = (torch.randn(batch, tokens, heads * d, generator=g) * 3).half()
        angles = torch.rand(tokens, d // 2, generator=g) * 6.3
        got = K.rms_norm_rope(x, norm.weight, norm.eps, angles.cos(), angles.sin(), heads)
        want = apply_rope(norm(x).unflatten(-1, (heads, -1)), angles.cos(), angles.sin())
        assert got.shape == want.shape and torch.equal(got, want), (got.float() - want.float()).abs().max()
    print("ok")
    """
)


INTERPRETER_CASES = {
    "block choice": BLOCK_CHOICE_CASES,
    "decoder": IMAGE_CASES,
    "query/key norm and rotation": ROPE_CASES,
    "LR projection windows": TIME_WINDOW_CASES,
}


@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed (pip install triton)")
@pytest.mark.parametrize("kernels", sorted(INTERPRETER_CASES))
def test_the_kernels_give_the_torch_results_in_the_interpreter(kernels):
    env = dict(os.environ, TRITON_INTERPRET="1")
    script = INTERPRETER_CASES[kernels]
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="the compiled kernels need a GPU")
def test_on_a_gpu_every_kernel_passes_its_check():
    from flashvsr import kernels

    assert kernels.check_kernels(torch.device("cuda"), compiled=True) == () and not kernels.turned_off


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="the compiled kernel needs a GPU")
def test_on_a_gpu_the_masks_are_those_of_kthvalue():
    g = torch.Generator().manual_seed(1)
    for shape, k in (((12, 17424), 7919), ((36, 13068), 7919), ((12, 72900), 16199)):
        probs = torch.rand(shape, generator=g).cuda().softmax(-1)
        assert torch.equal(masks.kth_largest(probs, k), reference(probs, k))
    scores = torch.randn(1, 12, 66, 264, generator=g).cuda()
    local = masks.local_window_mask(6, 11, 11, device="cuda")
    probs = scores.masked_fill(~local.repeat(1, 4), float("-inf")).softmax(-1).view(1, 12, 1, -1)
    want = (probs > reference(probs, 7919)).view(1, 12, 66, 264)
    assert torch.equal(masks.select_blocks(scores, local, 66, 7919), want)
    compiled = torch.compile(masks.select_blocks, fullgraph=True)  # as --compile runs it: no graph break
    assert torch.equal(compiled(scores, local, 66, 7919), want)
    current = want[..., 198:]
    assert all(torch.equal(a.cpu(), b) for a, b in zip(selected_first(current), selected_first(current.cpu())))


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="the compiled kernels need a GPU")
def test_on_a_gpu_the_decoder_kernels_match_torch():
    cl = torch.channels_last
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 128, 96, 176, generator=g).cuda().bfloat16().contiguous(memory_format=cl)
    up = upsample2x(x)
    assert up.is_contiguous(memory_format=cl)
    assert torch.equal(up, torch.nn.functional.interpolate(x.contiguous(), scale_factor=2, mode="nearest"))
    grown = torch.randn(2, 256, 48, 88, generator=g).cuda().bfloat16().contiguous(memory_format=cl)
    assert torch.equal(frames_from_channel_groups(grown, 2), grown.contiguous().reshape(4, 128, 48, 88))
    trained = x.detach().requires_grad_()  # training: autograd must see the op, so torch's form runs
    assert upsample2x(trained).grad_fn is not None


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="the compiled kernels need a GPU")
def test_on_a_gpu_the_lr_projection_windows_are_torchs():
    g = torch.Generator().manual_seed(3)
    clip = torch.randn(1, 768, 4, 48, 88, generator=g).cuda().bfloat16()
    history = torch.randn(1, 768, 2, 48, 88, generator=g).cuda().bfloat16()
    for hist, front in ((None, 2), (history, 0)):
        got = stacked_time_windows(clip, hist, front, 4, 2, (1, 1))
        torch_form = stacked_time_windows(clip.cpu(), None if hist is None else hist.cpu(), front, 4, 2, (1, 1))
        assert torch.equal(got.cpu(), torch_form)
