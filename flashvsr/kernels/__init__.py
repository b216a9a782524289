"""This project's own GPU kernels (Triton), each beside the torch form it replaces.

- :mod:`.block_choice`: LCSA's top-k threshold and the attention kernels' block tables.
- :mod:`.image`: the TC decoder's nearest 2× upsampling, temporal-growth regrouping and
  3-channel output conv, in channels-last memory.
- :mod:`.time_windows`: the LR projection's conv inputs, gathered in one pass.

Each public function runs its Triton kernel on CUDA tensors where Triton is installed (it comes
with CUDA builds of torch) and the torch form everywhere else. The tests run every kernel on
the CPU in Triton's interpreter against its torch form.
"""

from __future__ import annotations

import importlib.util

import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None


def use_triton(*tensors: torch.Tensor) -> bool:
    """Whether this project's Triton kernels serve these inputs: on CUDA, and not where autograd
    must see the op (training), since the kernels have no backward. Benchmarks switch
    ``HAVE_TRITON`` off for an A/B against the torch forms."""
    if not (HAVE_TRITON and tensors[0].is_cuda):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
