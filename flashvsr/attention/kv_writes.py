"""Where a call's keys and values are copied into the KV pool: on the caller's CUDA stream, or
on a side stream while the caller's stream chooses blocks and runs the layers' matrix work.

Per layer, a steady call copies its keys and values twice: into the pool's spare slot, where the
attention reads them, and after the attention into the ring slot that keeps them. At 1920×1080
these are four copies of 53 MB a layer, ≈ 7 ms per 8 frames of device-to-device copies that the
SMs wait for (benchmarks/results/2026-12-06_h100_s16/call6_profile_1080p.txt). The copy engines
can move them while the SMs work. Each side copy starts after everything queued on the caller's
stream so far (its inputs are written, the slot it overwrites has been read); the caller's stream
waits for the side stream before each layer's attention (which reads the spare) and at the end of
the DiT call.
The same copies in the same order: the same values.

A copy's inputs are kept alive until that wait, after which the caller's stream is ordered behind
the copy and the allocator may hand their memory out again: at most two copies' inputs at a time,
since every layer waits (waiting only at the call's end held a first call's keys and values for
every layer: +7.6 GB at 1080p, session 18). ``record_stream`` instead lets the
allocator reuse it only once the GPU has run the copy, which it checks when the host allocates, so
a host running a call ahead of the GPU holds back up to a call's keys and values (with it, session
17 measured 25.8 → 31.2 GB reserved at 1080p for the same allocated peak).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class KVWrites(Protocol):
    def copy(self, write: Callable[[], None], *inputs: torch.Tensor) -> None:
        """Run ``write`` (copies into the pool) after the caller's queued work; ``inputs`` are the
        caller's tensors it reads."""

    def wait(self) -> None:
        """Make the caller's stream wait for every copy so far."""


class InlineWrites:
    """Copies on the caller's stream, in its order (CPU; CUDA graphs)."""

    def copy(self, write: Callable[[], None], *inputs: torch.Tensor) -> None:
        write()

    def wait(self) -> None:
        pass


class SideStreamWrites:
    """Copies on a CUDA stream of their own (see the module)."""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)
        self.reading: list[torch.Tensor] = []  # inputs of the copies since the last wait

    def copy(self, write: Callable[[], None], *inputs: torch.Tensor) -> None:
        self.stream.wait_stream(torch.cuda.current_stream(self.stream.device))
        with torch.cuda.stream(self.stream):
            write()
        self.reading.extend(inputs)

    def wait(self) -> None:
        torch.cuda.current_stream(self.stream.device).wait_stream(self.stream)
        self.reading.clear()  # the caller's stream now runs after the copies: their inputs may be freed


INLINE = InlineWrites()


def kv_writes_for(device: torch.device, aside: bool) -> KVWrites:
    return SideStreamWrites(device) if aside and device.type == "cuda" else INLINE
