"""CUDA graphs of the DiT's streaming calls: one launch replays all 30 blocks.

Without graphs the host launches thousands of small kernels per call (norms, mask
construction, block-mask building, log-sum-exp merges) and the GPU waits on it. After the
first call a stream's calls differ only in their input values and in which KV-ring slots
they read and write, a cycle of ``cache_capacity`` slot plans. So each stream records, for
each (shape, slot plan) it meets, a graph of :meth:`WanDiT.forward_tokens` whose inputs are
fixed buffers; later calls copy their tokens and RoPE tables in and replay it. The replay
runs the very kernels of an eager call on the same memory: outputs are bit-identical.

A graph bakes in the addresses of the stream's KV rings, so graphs belong to the stream
(:class:`StreamState`) and are dropped when its tensors move (tile parking).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch

Inputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # tokens, RoPE cos, RoPE sin
Transformer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class CapturedCall:
    graph: torch.cuda.CUDAGraph
    inputs: Inputs  # the buffers the graph reads
    output: torch.Tensor  # the buffer it writes


@dataclass
class CallGraphs:
    """One stream's captured DiT calls, keyed by shape and KV slot plan.

    A shape is first run eagerly once (compiles kernels and settles lazy initialisation, which
    must not happen during a capture); every later new key is captured, then replayed."""

    captured: dict[Hashable, CapturedCall] = field(default_factory=dict)
    warm_shapes: set[tuple] = field(default_factory=set)
    pool: tuple | None = None  # one memory pool for all of the stream's graphs (they never overlap)

    def run(self, key: Hashable, transformer: Transformer, inputs: Inputs) -> torch.Tensor:
        entry = self.captured.get(key)
        if entry is None:
            shapes = tuple(t.shape for t in inputs)
            if shapes not in self.warm_shapes:
                self.warm_shapes.add(shapes)
                return transformer(*inputs)
            entry = self.captured[key] = self._capture(transformer, inputs)
        for buffer, value in zip(entry.inputs, inputs):
            buffer.copy_(value)
        entry.graph.replay()
        return entry.output.clone()  # the next replay overwrites the buffer

    def _capture(self, transformer: Transformer, inputs: Inputs) -> CapturedCall:
        buffers = tuple(t.clone() for t in inputs)
        graph = torch.cuda.CUDAGraph()
        with capturing(graph, self.pool):
            output = transformer(*buffers)
        if self.pool is None:
            self.pool = graph.pool()
        return CapturedCall(graph, buffers, output)  # type: ignore[arg-type]

    def clear(self) -> None:
        self.captured.clear()
        self.pool = None


@functools.cache
def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device)  # one per device: each stream gets cuBLAS workspaces of its own


@contextmanager
def capturing(graph: torch.cuda.CUDAGraph, pool: tuple | None) -> Iterator[None]:
    """Capture the block's kernels into ``graph`` on a side stream (never the legacy default stream),
    ordered after the caller's work. Unlike ``torch.cuda.graph`` it neither waits for the GPU nor
    empties the device and pinned-host caches, which cost a streamed pipeline more than the replays
    saved; errors only for unsafe calls on this thread (decoding and encoding threads run beside it)."""
    caller = torch.cuda.current_stream()
    side = _capture_stream(caller.device)
    side.wait_stream(caller)
    with torch.cuda.stream(side):
        graph.capture_begin(pool=pool, capture_error_mode="thread_local")
        try:
            yield
        finally:
            graph.capture_end()
    caller.wait_stream(side)
