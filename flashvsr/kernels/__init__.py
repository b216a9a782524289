"""This project's own GPU kernels (Triton), each beside the torch form it replaces.

- :mod:`.block_choice`: the attention kernels' block tables.
- :mod:`.image`: the TC decoder's nearest 2× upsampling and temporal-growth regrouping, in
  channels-last memory.
- :mod:`.time_windows`: the LR projection's conv inputs, gathered in one pass.
- :mod:`.rope`: the DiT's query/key RMS norm and rotary embedding in one pass.

Each public function runs its Triton kernel on CUDA tensors where Triton is installed (it comes
with CUDA builds of torch) and the torch form everywhere else. On a GPU the engine first runs
each kernel once against its torch form (:func:`check_kernels`) and keeps torch's ops for any
that fails. The tests run every kernel on the CPU in Triton's interpreter against its torch form.
A kernel stays only where the H100 measured it faster than what it replaces (BENCHMARKS.md,
session 16: a radix-select top-k threshold and a 3-channel output conv were dropped).
"""

from __future__ import annotations

import functools
import importlib.util

import torch

HAVE_TRITON = importlib.util.find_spec("triton") is not None
SMALLEST_TILE = 16  # the narrowest block a kernel is given (power-of-two widths, at least this)
turned_off: set[str] = set()  # kernels whose check failed on this machine: torch's forms serve instead


def use_triton(kernel: str, *tensors: torch.Tensor) -> bool:
    """Whether this project's Triton ``kernel`` serves these inputs: on CUDA, where its check did
    not fail, and not where autograd must see the op (training), since the kernels have no
    backward. Benchmarks switch ``HAVE_TRITON`` off for an A/B against the torch forms."""
    if not (HAVE_TRITON and tensors[0].is_cuda) or kernel in turned_off:
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def tile_width(n: int, most: int | None = None) -> int:
    """The power of two that a tile needs to cover ``n`` elements (at least :data:`SMALLEST_TILE`),
    capped at ``most`` (then the kernel loops over tiles)."""
    width = max(SMALLEST_TILE, 1 << (n - 1).bit_length())
    return width if most is None else max(SMALLEST_TILE, min(most, width))


@functools.cache
def check_kernels(device: torch.device, compiled: bool = False) -> tuple[str, ...]:
    """Run every kernel once on small inputs on ``device`` against its torch form (and, with
    ``compiled``, those that run inside torch.compile'd code once more under it), and turn off any
    that fails to compile, fails to run or differs (a Triton, torch or driver this code was not
    tested with): the pipeline then runs as before, only slower. Returns one line per kernel
    turned off."""
    if not HAVE_TRITON or device.type != "cuda":
        return ()
    from . import block_choice, image, rope, time_windows

    problems = []
    for module in (block_choice, image, rope, time_windows):
        checks = [*module.SELF_CHECKS.items(), *(module.COMPILED_CHECKS.items() if compiled else ())]
        for name, check in checks:
            if name in turned_off:
                continue
            try:
                with torch.no_grad():
                    check(device)
            except Exception as error:  # noqa: BLE001 - any failure of a kernel's compile or launch
                turned_off.add(name)
                first_line = (str(error).splitlines() or [""])[0]
                problems.append(f"Triton kernel {name} turned off ({type(error).__name__}: {first_line}); torch's ops serve")
    return tuple(problems)
