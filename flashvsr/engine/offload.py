"""DiT block weights kept in host memory and streamed to the device one block ahead (exact).

The official DiT's 30 blocks are 2.8 GB in bf16: on a small card that is the difference between
an exact untiled 1408×768 stream and a tiled one. Streamed, each block's weights live in one
pinned host buffer; the device keeps two block-sized buffers and copies block i + 1 in on a side
stream while block i runs (83 MB per block: a few milliseconds over PCIe, hidden behind the
block's compute). After the last block, block 0 is fetched during the decoder's work, ready for
the next call. The same numbers reach the same kernels: outputs are bit-identical.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn

SLOTS = 2  # device buffers: the block running and the block arriving


class StreamedBlocks:
    """Weights of ``blocks`` in host memory; ``with streamed(i):`` puts block i's on the device.

    Parameters named in ``host_only`` (prefixes; e.g. the cross-attention keys and values,
    needed only to precompute the text conditioning) stay in host memory and are never copied."""

    def __init__(self, blocks: Sequence[nn.Module], device: torch.device | str, host_only: tuple[str, ...] = ()):
        self.device = torch.device(device)
        self.params = [[p for n, p in b.named_parameters() if not n.startswith(host_only)] for b in blocks]
        for block in blocks:
            for name, p in block.named_parameters():
                if name.startswith(host_only):
                    p.data = p.data.cpu()
        self.dtype = _common_dtype(self.params)
        self.host = [self._to_host(params) for params in self.params]
        size = max(h.numel() for h in self.host)
        self.slots = [torch.empty(size, dtype=self.dtype, device=self.device) for _ in range(SLOTS)]
        self.resident: list[int | None] = [None] * SLOTS  # which block each slot holds (or is receiving)
        cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if cuda else None
        self.ready = [torch.cuda.Event() if cuda else None for _ in range(SLOTS)]  # copy into the slot done
        self.free = [torch.cuda.Event() if cuda else None for _ in range(SLOTS)]  # last block using it done

    @contextmanager
    def __call__(self, index: int) -> Iterator[None]:
        slot = self._fetch(index, avoid=None)
        self._fetch((index + 1) % len(self.host), avoid=slot)  # the next block arrives while this one runs
        if self.ready[slot] is not None:
            torch.cuda.current_stream(self.device).wait_event(self.ready[slot])
        self._point(index, self.slots[slot])
        try:
            yield
        finally:
            self._point(index, self.host[index])
            if self.free[slot] is not None:
                self.free[slot].record(torch.cuda.current_stream(self.device))

    # -- helpers ---------------------------------------------------------------------------------
    def _to_host(self, params: list[nn.Parameter]) -> torch.Tensor:
        """One flat (pinned, when there is a GPU to copy to) host buffer holding ``params``;
        the parameters become views of it."""
        flat = torch.empty(sum(p.numel() for p in params), dtype=self.dtype, pin_memory=self.device.type == "cuda")
        self._point_params(params, flat, copy=True)
        return flat

    def _fetch(self, index: int, avoid: int | None) -> int:
        """The slot holding block ``index``, starting its copy into a slot other than ``avoid``
        if it is not there yet."""
        if index in self.resident:
            return self.resident.index(index)
        slot = next(s for s in range(SLOTS) if s != avoid)
        self.resident[slot] = index
        source, target = self.host[index], self.slots[slot][: self.host[index].numel()]
        if self.copy_stream is None:
            target.copy_(source)
            return slot
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(self.free[slot])  # the slot's previous block has finished with it
            target.copy_(source, non_blocking=True)
            self.ready[slot].record(self.copy_stream)
        return slot

    def _point(self, index: int, flat: torch.Tensor) -> None:
        self._point_params(self.params[index], flat, copy=False)

    @staticmethod
    def _point_params(params: list[nn.Parameter], flat: torch.Tensor, copy: bool) -> None:
        offset = 0
        for p in params:
            view = flat[offset : offset + p.numel()].view(p.shape)
            if copy:
                view.copy_(p.data)
            p.data = view
            offset += p.numel()


def _common_dtype(params: list[list[nn.Parameter]]) -> torch.dtype:
    dtypes = {p.dtype for block in params for p in block}
    if len(dtypes) != 1:
        raise ValueError(f"streamed blocks must hold one dtype, found {sorted(map(str, dtypes))}")
    return dtypes.pop()
