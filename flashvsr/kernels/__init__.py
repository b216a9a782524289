"""This project's own GPU kernels (Triton), each beside the torch form it replaces.

- :mod:`.block_choice`: LCSA's top-k threshold and the attention kernels' block tables.
- :mod:`.image`: the TC decoder's nearest 2× upsampling and its 3-channel output conv, in
  channels-last memory.

Each public function runs its Triton kernel on CUDA tensors where Triton is installed (it comes
with CUDA builds of torch) and the torch form everywhere else. The tests run every kernel on
the CPU in Triton's interpreter against its torch form.
"""

from __future__ import annotations

import importlib.util

import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None


def use_triton(x: torch.Tensor) -> bool:
    """Whether this project's Triton kernels serve ``x`` (benchmarks switch ``HAVE_TRITON`` off
    for an A/B against the torch forms)."""
    return HAVE_TRITON and x.is_cuda
