"""This project's Triton kernels give exactly what their torch forms give: LCSA's threshold (the
k-th largest value per row, as ``kthvalue``) and the attention kernels' block tables.

The kernels run on the CPU in Triton's interpreter (a subprocess, since the interpreter is chosen
when a kernel is defined) and, on a GPU, compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flashvsr.attention import masks
from flashvsr.attention.gpu_kernels import HAVE_TRITON, kth_largest, selected_first


def reference(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.kthvalue(x.shape[-1] - k, dim=-1, keepdim=True).values


def test_k_outside_the_row_is_an_error():
    with pytest.raises(ValueError, match="outside 0…9"):
        kth_largest(torch.zeros(2, 10), 10)


def test_the_threshold_keeps_exactly_k_values_above_it_without_ties():
    x = torch.randn(3, 4, 500)
    for k in (0, 1, 250, 499):
        t = kth_largest(x, k)
        assert t.shape == (3, 4, 1)
        assert ((x > t).sum(-1) == k).all()


# Rows as LCSA makes them: a steady call's 12 (head, slice) rows of 66 softmax rows over 264
# windows (1408×768), many exact zeros from the local mask; then ties, signs, ±0, tiny values,
# a row that is not a multiple of the kernel's chunk, and the extreme ranks.
KERNEL_CASES = textwrap.dedent(
    """
    import torch
    from flashvsr.attention import gpu_kernels as K

    def check(x, k):
        got = K._triton_kth_largest(x, k)
        want = x.kthvalue(x.shape[-1] - k, dim=-1, keepdim=True).values
        assert got.shape == want.shape, (got.shape, want.shape)
        assert torch.equal(got, want), (k, got.flatten()[:4], want.flatten()[:4])

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(12, 66, 264, generator=g)
    scores[:, :, ::3] = float("-inf")
    probs = scores.softmax(-1).reshape(12, 66 * 264)
    check(probs, 7919)
    check(probs, 0)
    check(probs, probs.shape[-1] - 1)
    ties = torch.tensor([[1.0, 1.0, 1.0, -2.0, -0.0, 0.0, 3.0, -5.5, 1e-30, -1e-30, 1e-45, float("inf")]])
    for k in range(ties.shape[-1]):
        check(ties, k)
    check(torch.randn(2, 3, 5001, generator=g), 1234)

    def check_tables(mask):
        want = K.selected_first(mask.cpu())  # the torch form: the mask is on the CPU
        got = K._triton_selected_first(mask)
        assert all(torch.equal(a, b) for a, b in zip(got, want)), mask.shape

    selected = torch.rand(1, 12, 66, 264, generator=g) < 0.45  # a steady call's [cached, current] windows
    check_tables(selected[..., 198:])  # the current part: a slice of each row
    check_tables(selected[..., :198].contiguous())
    for density in (0.0, 1.0):
        check_tables(torch.rand(2, 3, 5, 37, generator=g) < density)
    check_tables(torch.rand(4, 1, generator=g) < 0.5)
    print("ok")
    """
)


@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed (pip install triton)")
def test_the_triton_kernels_give_the_torch_results_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", KERNEL_CASES], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.skipif(not (HAVE_TRITON and torch.cuda.is_available()), reason="the compiled kernel needs a GPU")
def test_on_a_gpu_the_masks_are_those_of_kthvalue():
    g = torch.Generator().manual_seed(1)
    for shape, k in (((12, 17424), 7919), ((36, 13068), 7919), ((12, 72900), 16199)):
        probs = torch.rand(shape, generator=g).cuda().softmax(-1)
        assert torch.equal(kth_largest(probs, k), reference(probs, k))
    scores = torch.randn(1, 12, 66, 264, generator=g).cuda()
    local = masks.local_window_mask(6, 11, 11, device="cuda")
    probs = scores.masked_fill(~local.repeat(1, 4), float("-inf")).softmax(-1).view(1, 12, 1, -1)
    want = (probs > reference(probs, 7919)).view(1, 12, 66, 264)
    assert torch.equal(masks.select_blocks(scores, local, 66, 7919), want)
    compiled = torch.compile(masks.select_blocks, fullgraph=True)  # as --compile runs it: no graph break
    assert torch.equal(compiled(scores, local, 66, 7919), want)
    current = want[..., 198:]
    assert all(torch.equal(a.cpu(), b) for a, b in zip(selected_first(current), selected_first(current.cpu())))
