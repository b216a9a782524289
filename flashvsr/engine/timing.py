"""Per-stage timing hooks for the engine (benchmarks); a no-op unless one is installed."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator, Protocol

import torch

STAGES = ("prepare", "lq_proj", "dit", "decode", "color_fix", "stabilize", "output")


class StageClock(Protocol):
    def section(self, name: str) -> ContextManager[None]: ...


class NullClock:
    def section(self, name: str) -> ContextManager[None]:
        return nullcontext()


class CudaClock:
    """Times sections with CUDA events: no host synchronisation until :meth:`totals_ms`. Also the
    host's own time in each section (:meth:`host_totals_ms`): launching the section's work."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = defaultdict(list)
        self.host = WallClock()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with self.host.section(name):
            start.record()
            yield
            end.record()
        self.events[name].append((start, end))

    def host_totals_ms(self) -> dict[str, float]:
        return self.host.totals_ms()

    def totals_ms(self) -> dict[str, float]:
        torch.cuda.synchronize()
        return {k: sum(s.elapsed_time(e) for s, e in v) for k, v in self.events.items()}


class WallClock:
    """Host wall-clock sections (CPU runs only; not for reported GPU figures)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.totals[name] += (time.perf_counter() - t) * 1e3

    def totals_ms(self) -> dict[str, float]:
        return dict(self.totals)
