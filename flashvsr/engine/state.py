"""Everything one stream carries between frames, in one explicit object."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch

from ..attention.lcsa import AttentionPlan, KVPool, SlotHomes, SlotTable
from ..config import VAE_SPATIAL_FACTOR
from ..models.lq_proj import LQProjCache
from ..models.tc_decoder import TCDecoderMemory
from ..models.wan_vae import CausalCache
from ..stabilizer import StabilizerMemory
from ..transfer import to_pinned_host
from .graphs import CallGraphs
from .overlap import InFlight


class NoiseSource(Protocol):
    """Gaussian noise for latent frames [start, start + count): (1, C, count, h, w), float32."""

    def __call__(self, start: int, count: int, shape: tuple[int, int, int]) -> torch.Tensor: ...


@dataclass(frozen=True)
class SeededNoise:
    """Noise drawn per latent frame from ``(seed, frame index)``: the same whatever the call
    structure, device or stream length (the reference draws all frames at once instead)."""

    seed: int = 0

    def __call__(self, start: int, count: int, shape: tuple[int, int, int]) -> torch.Tensor:
        frames = []
        for j in range(start, start + count):
            gen = torch.Generator().manual_seed(frame_seed(self.seed, j))
            frames.append(torch.randn((1, shape[0], 1, shape[1], shape[2]), generator=gen))
        return torch.cat(frames, dim=2)


def frame_seed(seed: int, index: int) -> int:
    """A 32-bit generator seed for (seed, latent frame): torch's CPU generator keeps only the
    low 32 bits of a seed, so the pair is hashed rather than packed into one integer."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


@dataclass
class StreamTracer:
    """Optional instrumentation (tests, debugging): called with each call's intermediates."""

    on_mask: Callable[[int, int, torch.Tensor], None] | None = None  # (call, layer, mask)
    on_latents: Callable[[int, torch.Tensor], None] | None = None  # (call, latents)
    on_decoded: Callable[[int, torch.Tensor], None] | None = None  # (call, frames before colour fix)


@dataclass
class StreamState:
    """Per-stream state: geometry, pending LQ frames, counters and every model cache."""

    height: int  # model frame size (multiples of 128)
    width: int
    content: tuple[int, int, int, int]  # (y0, x0, h, w) of real pixels inside the model frame
    attention: AttentionPlan
    noise: NoiseSource
    kv: KVPool | None  # every DiT layer's KV ring, allocated by the first call
    slots: SlotTable  # which ring slot holds which cached time slice
    homes: SlotHomes | None = None  # with roaming KV slots: where each layer's ring slots are in the pool
    lq_proj: LQProjCache = field(default_factory=LQProjCache)
    decoder: TCDecoderMemory | CausalCache | None = None
    lq: list[torch.Tensor] = field(default_factory=list)  # pending LQ frames (3, H, W)
    lq_offset: int = 0  # absolute index of lq[0]
    received: int = 0  # LQ frames pushed (padding excluded)
    emitted: int = 0  # output frames returned
    calls: int = 0  # DiT calls done
    in_flight: list[InFlight] = field(default_factory=list)  # calls' output frames not handed out yet
    stabilizer: StabilizerMemory = field(default_factory=StabilizerMemory)  # the previous output frame, if filtered
    finished: bool = False
    tracer: StreamTracer | None = None
    graphs: CallGraphs = field(default_factory=CallGraphs)  # captured DiT calls (CUDA), tied to the KV rings

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.height // VAE_SPATIAL_FACTOR, self.width // VAE_SPATIAL_FACTOR


STATELESS_FIELDS = frozenset({"noise", "tracer", "graphs"})  # nothing to move (graphs are dropped instead)


def move_state(state: StreamState, device: torch.device | str) -> None:
    """Move every tensor a stream holds (KV rings, LR-projection cache, decoder memory,
    pending LQ frames, attention mask) to ``device``, in place: used to park idle tiles."""
    device = torch.device(device)
    state.graphs.clear()  # they replay on the old tensors' addresses
    for f in dataclasses.fields(state):
        if f.name not in STATELESS_FIELDS:
            setattr(state, f.name, _moved(getattr(state, f.name), device))


def _moved(value: Any, device: torch.device) -> Any:
    if torch.is_tensor(value):
        return _tensor_to(value, device)
    if isinstance(value, list):
        return [_moved(v, device) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        moved = {f.name: _moved(getattr(value, f.name), device) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **moved)
    return value


def _tensor_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if t.device == device:
        return t
    if t.is_cuda and device.type == "cpu":
        return to_pinned_host(t)  # pinned: the copies both ways run at full bus speed, without blocking
    return t.to(device, non_blocking=True)
