"""Where a call's decoding runs: on the caller's CUDA stream, or beside the next DiT call.

The TC decoder (or Wan VAE) and the colour fix of call n need only call n's latents and LQ
frames, so on a GPU they can run on a second CUDA stream while the DiT of call n+1 runs on
the first: the decoder's full-resolution convolutions fill the SMs the attention and matrix
kernels leave idle. The kernels are the same and run in the same order within each stream, so
the frames are the same; only their hand-over moves: a push returns the frames of the calls
before its last one, and the end of the stream returns the rest.

Tensors crossing streams are marked with ``record_stream``, so the caching allocator does not
hand their memory to the other stream's work while it may still read them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class InFlight:
    """One call's output frames (T, 3, h, w), and the event after which they are written
    (None: written on the caller's stream already)."""

    frames: torch.Tensor
    written: torch.cuda.Event | None = None


class Decoding(Protocol):
    calls_held: int  # calls whose frames a push keeps in flight (returned by a later push)

    def submit(self, decode: Callable[[], torch.Tensor], inputs: Iterable[torch.Tensor]) -> InFlight: ...

    def collect(self, item: InFlight) -> torch.Tensor: ...

    def settle(self) -> None: ...


class InlineDecoding:
    """Decode on the caller's stream: a call's frames are handed out with the call."""

    calls_held = 0

    def submit(self, decode: Callable[[], torch.Tensor], inputs: Iterable[torch.Tensor]) -> InFlight:
        return InFlight(decode())

    def collect(self, item: InFlight) -> torch.Tensor:
        return item.frames

    def settle(self) -> None:
        pass


class SideStreamDecoding:
    """Decode on a second CUDA stream, overlapping the next call's DiT (see the module)."""

    calls_held = 1

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def submit(self, decode: Callable[[], torch.Tensor], inputs: Iterable[torch.Tensor]) -> InFlight:
        caller = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(caller)  # the latents and LQ frames are written by now
        with torch.cuda.stream(self.stream):
            frames = decode()
        for t in inputs:
            t.record_stream(self.stream)  # the caller frees them; the decoder may still be reading
        return InFlight(frames, self.stream.record_event())

    def collect(self, item: InFlight) -> torch.Tensor:
        caller = torch.cuda.current_stream(self.device)
        caller.wait_event(item.written)
        item.frames.record_stream(caller)  # written on the side stream, read (and freed) on the caller's
        return item.frames

    def settle(self) -> None:
        """Make the caller's stream wait for every decode submitted so far (before a stream's
        tensors are copied elsewhere, e.g. parked in host memory)."""
        torch.cuda.current_stream(self.device).wait_stream(self.stream)


def decodes_beside(device: torch.device, overlap: bool) -> bool:
    """Whether decoding runs on a second stream: asked for, and on a GPU (a CPU has one stream)."""
    return overlap and device.type == "cuda"


def decoding_for(device: torch.device, overlap: bool) -> Decoding:
    return SideStreamDecoding(device) if decodes_beside(device, overlap) else InlineDecoding()


HIGHEST_PRIORITY = -100  # torch maps it to the device's highest stream priority


def first_stream_for(device: torch.device, overlap: bool) -> torch.cuda.Stream | None:
    """With decoding beside the DiT, a stream of the highest priority for the rest (LR projection
    and DiT, the critical path): the GPU then schedules their kernels first and the decoder's fill
    the gaps (H100: 57.4 → 58.4 FPS at 1408×768). None where decoding is not beside it."""
    return torch.cuda.Stream(device, priority=HIGHEST_PRIORITY) if decodes_beside(device, overlap) else None


@contextmanager
def running_on(stream: torch.cuda.Stream | None) -> Iterator[None]:
    """Run the block's GPU work on ``stream``, ordered after and before the caller's own (no-op for None)."""
    if stream is None:
        yield
        return
    caller = torch.cuda.current_stream(stream.device)
    stream.wait_stream(caller)  # whatever the caller wrote before (weights, frames) is there
    with torch.cuda.stream(stream):
        yield
    caller.wait_stream(stream)
