"""Host ↔ GPU copies that never make the host wait.

A copy from pageable host memory to the GPU is ordered after every kernel queued on the stream,
and torch's blocking form then waits for it: each such copy drains the GPU's queue, and the GPU
idles while the host launches the next kernels. Staging through pinned memory lets the copy be
queued like a kernel (the caching host allocator keeps the staging buffer until it has run).
"""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; from the host to a GPU, queued without waiting."""
    device = torch.device(device)
    if device.type != "cuda" or t.is_cuda:  # nothing to stage: the host's own memory, or already on a GPU
        return t.to(device)
    staged = t if t.is_pinned() else t.pin_memory()
    return staged.to(device, non_blocking=True)


def to_pinned_host(t: torch.Tensor) -> torch.Tensor:
    """A GPU tensor's copy in pinned host memory, queued without waiting (read it after the stream's
    work up to here has run)."""
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)
