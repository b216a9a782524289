"""LCSA as the DiT's self-attention for one streaming call (SPEC §4).

Each layer's KV cache is a ring of fixed slots holding one time slice each. The cache rule
("append the call's slices, then drop the oldest one if more than ``kv_slices``") becomes a
:class:`CachePlan` computed once per call: which slots stay, which new slices go where. A
dropped slice's slot is simply overwritten, so the cache is never copied or concatenated and
its memory is fixed from the first call. The slot table is the same for every layer and
lives in the stream state; so does the :class:`KVPool`, one allocation that holds every
layer's ring and a spare slot.

:class:`SparseCallAttention` is built by the engine for a single DiT call. Called by each
block with window-ordered q, k, v, it scores pooled windows against the cached and the
current slices, selects blocks exactly as the reference does (in the reference's logical
order: oldest cached slice first), runs the exact block-sparse kernel, then stores the
layer's new slices in their slots. A kernel that reads keys through window indices
(``takes_columns``: FlashAttention-4's block tables, the gather kernel) sees the layer's ring
and the call's windows, copied to the spare slot, in one call over the pool; others get the
ring and the call's windows as two parts that they merge. The copies into the pool run where the
engine's :class:`~.kv_writes.KVWrites` puts them: on the caller's stream, or beside it. With
roaming slots (:class:`SlotHomes`; with ``--overlap-decode``) the call's windows stay in the free slot they were
copied to, which becomes part of the layer's ring: one copy instead of two.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..config import WINDOW, WINDOW_TOKENS
from ..fp8 import FP8, quantize_rows
from ..transfer import to_device
from . import masks
from .backends import BlockSparseAttention, takes_columns
from .kv_writes import INLINE, KVWrites

MaskHook = Callable[[int, torch.Tensor], None]  # (layer, selected-block mask)
FIRST_CALL_SLICES = 3  # call 0 processes three time slices, mutually visible
SPARE_SLICES = 1  # a steady call's new slices, waiting in the pool beside the rings
ROAMING_SPARES = 2  # with roaming slots: one free slot for each half of the layers
# A layer's span of the pool (its ring and the spare) up to this many elements is read in one call
# (1408×768: 0.6e9, 1080p: 1.2e9): FlashAttention-4 reads windows correctly that far, past 2³¹
# (tests/test_attention.py, passed on an H100 on 2026-12-06); larger spans keep two parts.
JOINED_MAX_ELEMENTS = 11_000 * 128 * 1536


def ring_capacity(kv_slices: int) -> int:
    """Most slices a layer's cache ever holds: the rule drops one slice per call, so after the
    three-slice first call it keeps two even when ``kv_slices`` is 1."""
    return max(kv_slices, FIRST_CALL_SLICES - 1)


@dataclass(frozen=True)
class AttentionPlan:
    """Per-stream constants of LCSA: the token grid, local mask, top-k, cache length and the
    cache's storage format."""

    tokens_h: int
    tokens_w: int
    local_mask: torch.Tensor  # (S, S) bool
    topk: int
    kv_slices: int
    kv_cache: str = "model"  # or "fp8": keys and values stored as e4m3 with a scale per token and head

    @property
    def windows_per_slice(self) -> int:
        return self.local_mask.shape[0]

    @property
    def tokens_per_slice(self) -> int:
        return self.windows_per_slice * WINDOW_TOKENS

    @property
    def cache_capacity(self) -> int:
        return ring_capacity(self.kv_slices)

    @staticmethod
    def build(tokens_h: int, tokens_w: int, local_range: int, topk_ratio: float, kv_slices: int, device=None,
              kv_cache: str = "model"):  # fmt: skip
        if tokens_h % WINDOW[1] or tokens_w % WINDOW[2]:
            raise ValueError(f"token grid {tokens_h}×{tokens_w} is not a multiple of the {WINDOW[1:]} window")
        if kv_slices < 1:
            raise ValueError("kv_ratio must be at least 1")
        rows, cols = masks.window_grid(tokens_h, tokens_w)
        local = masks.local_window_mask(rows, cols, local_range, device=device)
        return AttentionPlan(tokens_h, tokens_w, local, masks.topk_count(rows * cols, topk_ratio), kv_slices, kv_cache)


@dataclass
class KVRing:
    """One layer's cache (views into the :class:`KVPool`): keys and values (B, slots·S·128, heads,
    d) in window order within each slot, and the pooled keys (B, heads, slots·S, d) used to score
    windows. In the fp8 format ``k``/``v`` hold e4m3 values and ``k_scale``/``v_scale`` (B, tokens,
    heads, 1) their scales; the pooled keys (which pick the blocks) stay float32 either way."""

    k: torch.Tensor
    v: torch.Tensor
    pooled: torch.Tensor
    k_scale: torch.Tensor | None = None  # in the model dtype, which the kernel is given back
    v_scale: torch.Tensor | None = None

    def keys(self) -> torch.Tensor:
        return self.k if self.k_scale is None else self.k.to(self.k_scale.dtype) * self.k_scale

    def values(self) -> torch.Tensor:
        return self.v if self.v_scale is None else self.v.to(self.v_scale.dtype) * self.v_scale

    def write(self, start: int, end: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store tokens [start, end) of the ring (quantised in the fp8 format)."""
        if self.k_scale is None:
            self.k[:, start:end], self.v[:, start:end] = k, v
            return
        self.k[:, start:end], self.k_scale[:, start:end] = quantize_fp8(k)
        self.v[:, start:end], self.v_scale[:, start:end] = quantize_fp8(v)


@dataclass
class KVPool:
    """Every layer's ring in one allocation, slot-major, with :data:`SPARE_SLICES` spare slots in
    the middle: the first half of the layers' rings (C slots each, the plan's cache capacity), the
    spare, the second half. A layer's ring and the spare then lie within about half the pool (its
    :meth:`span`), which keeps a kernel's offsets small. Allocated once, by a stream's first call;
    moved as a whole when a tile is parked. ``roaming``: one spare per half, and a layer's slots may
    be anywhere in its half (:class:`SlotHomes`)."""

    k: torch.Tensor  # (B, slots·S·128, heads, d)
    v: torch.Tensor
    pooled: torch.Tensor  # (B, heads, slots·S, d), float32
    k_scale: torch.Tensor | None
    v_scale: torch.Tensor | None
    capacity: int  # slots per layer
    layers: int
    roaming: bool = False

    @staticmethod
    def allocate(plan: AttentionPlan, layers: int, batch: int, heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device, roaming: bool = False) -> "KVPool":  # fmt: skip
        slots = layers * plan.cache_capacity + KVPool.spares_for(roaming)
        tokens, windows = slots * plan.tokens_per_slice, slots * plan.windows_per_slice
        zeros = lambda last, dt: torch.zeros(batch, tokens, heads, last, device=device, dtype=dt)  # noqa: E731
        pooled = torch.zeros(batch, heads, windows, head_dim, device=device)
        if plan.kv_cache != "fp8":
            return KVPool(zeros(head_dim, dtype), zeros(head_dim, dtype), pooled, None, None, plan.cache_capacity,
                          layers, roaming)  # fmt: skip
        return KVPool(zeros(head_dim, FP8), zeros(head_dim, FP8), pooled, zeros(1, dtype), zeros(1, dtype),
                      plan.cache_capacity, layers, roaming)  # fmt: skip

    @staticmethod
    def spares_for(roaming: bool) -> int:
        return ROAMING_SPARES if roaming else SPARE_SLICES

    @property
    def windows_per_slot(self) -> int:
        return self.pooled.shape[2] // (self.layers * self.capacity + self.spares_for(self.roaming))

    @property
    def spare_slot(self) -> int:
        return (self.layers // 2) * self.capacity

    def half(self, layer: int) -> int:
        return int(layer >= self.layers // 2)

    def ring_slot(self, layer: int) -> int:
        """The first slot of ``layer``'s ring (as the first call fills it)."""
        return layer * self.capacity + (self.spares_for(self.roaming) if self.half(layer) else 0)

    @functools.cached_property
    def largest_span_elements(self) -> int:
        """Elements of keys in the widest layer's span: what a kernel reading one span must index."""
        slots = max(end - first for first, end in map(self.span, range(self.layers)))
        return slots * self.windows_per_slot * WINDOW_TOKENS * self.k[0, 0].numel()

    def span(self, layer: int) -> tuple[int, int]:
        """Slots [first, end) that hold ``layer``'s ring and the spare (roaming: its whole half)."""
        if self.roaming:
            middle = self.spare_slot + 1  # the first half's spare ends its half; the second's begins the other
            return (0, middle) if not self.half(layer) else (middle, self.layers * self.capacity + ROAMING_SPARES)
        ring, spare = self.ring_slot(layer), self.spare_slot
        return min(ring, spare), max(ring + self.capacity, spare + SPARE_SLICES)

    def ring(self, layer: int) -> KVRing:
        first = self.ring_slot(layer)
        return self.slots(first, first + self.capacity)

    def spare(self) -> KVRing:
        return self.slots(self.spare_slot, self.spare_slot + SPARE_SLICES)

    def slots(self, first: int, end: int) -> KVRing:
        """Slots [first, end) as one ring's views."""
        w = self.windows_per_slot
        t = w * WINDOW_TOKENS
        cut = lambda x: None if x is None else x[:, first * t : end * t]  # noqa: E731
        return KVRing(cut(self.k), cut(self.v), self.pooled[:, :, first * w : end * w], cut(self.k_scale),
                      cut(self.v_scale))  # fmt: skip


def quantize_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, d) → e4m3 values and a scale per vector, stored in the model dtype (the kernel is given that back)."""
    return quantize_rows(x, x.dtype)


@dataclass(frozen=True)
class CachePlan:
    """For one call: cached slots read (oldest first), where new slices are written, and the
    slot order after the call."""

    read: tuple[int, ...]
    writes: tuple[tuple[int, int], ...]  # (slice of this call, slot)
    after: tuple[int, ...]


@dataclass
class SlotTable:
    """Which ring slot holds which cached slice, oldest first; shared by all layers."""

    capacity: int
    order: list[int] = field(default_factory=list)

    def plan(self, new_slices: int, kv_slices: int) -> CachePlan:
        entries = [("cached", s) for s in self.order] + [("new", i) for i in range(new_slices)]
        if len(entries) > kv_slices:
            entries = entries[1:]  # the oldest slice only, as the reference does
        kept = {s for kind, s in entries if kind == "cached"}
        free = [s for s in range(self.capacity) if s not in kept]
        writes, after = [], []
        for kind, value in entries:
            slot = value if kind == "cached" else free.pop(0)
            if kind == "new":
                writes.append((value, slot))
            after.append(slot)
        return CachePlan(read=tuple(self.order), writes=tuple(writes), after=tuple(after))


@dataclass(frozen=True)
class SlotHomes:
    """Roaming slots (``EngineConfig.roaming_kv_slots``): the pool slot that holds each layer's ring
    slot, and each half's free slot. A steady call writes a layer's new slice once, into its half's
    free slot, where the attention reads it; the slot of the slice the layer drops becomes the free
    slot of the half's next layer. Fixed rings copy each new slice twice (to the spare, then to its
    ring slot); this needs one more slot."""

    homes: tuple[tuple[int, ...], ...]  # [layer][ring slot] → pool slot
    free: tuple[int, ...]  # [half] → pool slot

    @staticmethod
    def start(pool: KVPool) -> SlotHomes:
        """As the first call fills the pool: each ring where :meth:`KVPool.ring_slot` puts it, the spares free."""
        homes = tuple(tuple(range(pool.ring_slot(i), pool.ring_slot(i) + pool.capacity)) for i in range(pool.layers))
        return SlotHomes(homes, tuple(pool.spare_slot + h for h in range(ROAMING_SPARES)))

    def replaced(self, pool: KVPool, layer: int, ring_slot: int) -> SlotHomes:
        """After ``layer`` wrote its new slice to its half's free slot in place of ``ring_slot``'s."""
        half, homes, free = pool.half(layer), list(self.homes), list(self.free)
        ring = list(homes[layer])
        ring[ring_slot], free[half] = free[half], ring[ring_slot]
        homes[layer] = tuple(ring)
        return SlotHomes(tuple(homes), tuple(free))


def slot_windows(slots: tuple[int, ...], windows_per_slice: int, device) -> torch.Tensor:
    """Window indices, in the ring, of the given slots (in that order)."""
    base = torch.arange(windows_per_slice, device=device)
    if not slots:
        return base[:0]
    return torch.cat([s * windows_per_slice + base for s in slots])


def choose_blocks(
    q: torch.Tensor,
    k: torch.Tensor,
    ring_pooled: torch.Tensor,
    cached: torch.Tensor,
    local_mask: torch.Tensor,
    windows_per_slice: int,
    topk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's selected key windows over [cached windows of the ring, the call's windows]
    (logical order, as the reference scores them: cached slices first), and the call's pooled
    keys. Pure tensors in and out, so the engine can compile it (``--compile``)."""
    q_pooled, k_pooled = masks.pooled_windows(q), masks.pooled_windows(k)
    scores = masks.block_scores(q_pooled, k_pooled)
    if cached.numel():
        scores = torch.cat([masks.block_scores(q_pooled, ring_pooled[:, :, cached]), scores], dim=-1)
    return masks.select_blocks(scores, local_mask, windows_per_slice, topk), k_pooled


BlockChooser = Callable[..., tuple[torch.Tensor, torch.Tensor]]  # choose_blocks or its compiled form


class SparseCallAttention:
    """The DiT self-attention of one streaming call (implements ``AttentionFn`` on
    window-ordered tokens)."""

    def __init__(
        self,
        plan: AttentionPlan,
        pool: KVPool,
        cache: CachePlan,
        kernel: BlockSparseAttention,
        on_mask: MaskHook | None = None,
        chooser: BlockChooser = choose_blocks,
        writes: KVWrites = INLINE,
        homes: SlotHomes | None = None,
    ):
        self.plan = plan
        self.pool = pool
        self.cache = cache
        self.kernel = kernel
        self.on_mask = on_mask
        self.chooser = chooser
        self.writes = writes
        self.cached = slot_windows(cache.read, plan.windows_per_slice, plan.local_mask.device)  # the same in every ring
        new_slices = len(cache.writes)  # with anything cached, every new slice is kept
        exact_cache = plan.kv_cache != "fp8"  # the kernel reads the pool's values as they are
        fits = new_slices <= SPARE_SLICES and pool.largest_span_elements <= JOINED_MAX_ELEMENTS
        self.joins = takes_columns(kernel) and exact_cache and bool(cache.read) and fits
        self.roams = self.joins and pool.roaming
        if pool.roaming and cache.read and not self.roams:
            raise RuntimeError("roaming KV slots need the one-call attention path (a kernel that takes columns)")
        self.homes_after: SlotHomes | None = None  # roaming: where the layers' slices are after this call
        self.targets = [pool.spare_slot] * pool.layers  # where each layer's windows are written (one call)
        self.columns = self.pooled_windows = None
        if self.roams:
            self._roam(homes)
        elif self.joins:
            self.columns = self._pool_columns(new_slices)

    def _pool_columns(self, new_slices: int) -> torch.Tensor:
        """(layers, K) int32: each layer's cached windows (logical order), then the spare slot's,
        as windows of the layer's span of the pool."""
        pool, w = self.pool, self.plan.windows_per_slice
        first = torch.tensor([pool.span(layer)[0] for layer in range(pool.layers)])[:, None]
        ring = torch.tensor([pool.ring_slot(layer) for layer in range(pool.layers)])[:, None]
        cached = slot_windows(self.cache.read, w, "cpu")
        spare = torch.arange(new_slices * w) + (pool.spare_slot - first) * w
        table = torch.cat([cached + (ring - first) * w, spare], dim=1).int()
        return to_device(table, self.cached.device)  # pinned: no copy the GPU waits for

    def _roam(self, homes: SlotHomes) -> None:
        """Roaming slots: follow the free slots through the layers, in the order they run. Each
        layer's windows go to its half's free slot; the tables map the layer's cached slices (logical
        order) and then that slot to the pool's windows, relative to the layer's span for the kernel's
        columns and absolute for the pooled keys that choose blocks."""
        pool, w = self.pool, self.plan.windows_per_slice
        ((_, dropped),) = self.cache.writes  # one new slice, in place of the ring slot it drops
        columns, pooled = [], []
        for layer in range(pool.layers):
            cached = slot_windows(tuple(homes.homes[layer][s] for s in self.cache.read), w, "cpu")
            self.targets[layer] = homes.free[pool.half(layer)]
            written = slot_windows((self.targets[layer],), w, "cpu")
            columns.append(torch.cat([cached, written]) - pool.span(layer)[0] * w)
            pooled.append(cached)
            homes = homes.replaced(pool, layer, dropped)
        self.columns = to_device(torch.stack(columns).int(), self.cached.device)
        self.pooled_windows = to_device(torch.stack(pooled), self.cached.device)
        self.homes_after = homes

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        p = self.plan
        ring = self.pool.ring(layer)
        target = self.targets[layer]
        if self.joins:  # the call's windows to the spare (or free) slot, while the blocks are chosen
            self.writes.copy(lambda: self.pool.slots(target, target + 1).write(0, k.shape[1], k, v), k, v)
        pooled, cached = (self.pool.pooled, self.pooled_windows[layer]) if self.roams else (ring.pooled, self.cached)
        selected, k_pooled = self.chooser(q, k, pooled, cached, p.local_mask, p.windows_per_slice, p.topk)
        if self.on_mask is not None:
            self.on_mask(layer, selected)
        self.writes.wait()  # the spare's copy (joined) or the last layer's ring copy: at most a layer's inputs held
        if self.joins:
            out = self.kernel(q, [self.joined(layer, selected)])
        else:
            out = self.kernel(q, self.parts(ring, k, v, selected))
        if self.roams:  # the windows stay where they were written: only their pooled keys to store
            self.pool.slots(target, target + 1).pooled.copy_(k_pooled)
        elif self.cache.writes:
            self.writes.copy(lambda: self._store_kv(ring, k, v), k, v)
            self._store_pooled(ring, k_pooled)
        return out.flatten(2)

    def finish(self) -> None:
        """The end of the DiT call: later work (the next call's attention) may read every copy."""
        self.writes.wait()

    def joined(self, layer: int, selected: torch.Tensor) -> tuple:
        """One part over the pool, the call's windows in the spare (or free) slot: the selection's
        columns mapped to the pool's windows (the layer's cached ones, then the call's)."""
        pool, t = self.pool, self.plan.tokens_per_slice
        first, end = pool.span(layer)
        return pool.k[:, first * t : end * t], pool.v[:, first * t : end * t], selected, self.columns[layer]

    def parts(self, ring: KVRing, k: torch.Tensor, v: torch.Tensor, selected: torch.Tensor) -> list:
        """The kernel's key/value parts for a layer's selection over [cached windows, the call's]:
        the ring (its mask placed at the cached slots' windows) when anything is cached, then the call."""
        cached = self.cached
        parts = [(k, v, selected[..., cached.numel() :])]
        if cached.numel():
            in_ring = selected.new_zeros(*selected.shape[:-1], ring.pooled.shape[2])
            in_ring[..., cached] = selected[..., : cached.numel()]
            parts.insert(0, (ring.keys(), ring.values(), in_ring))
        return parts

    def _store_kv(self, ring: KVRing, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write this call's kept slices into their ring slots (after this layer's attention,
        so a dropped slice's slot can be reused at once)."""
        t = self.plan.tokens_per_slice
        for new, slot in self.cache.writes:
            ring.write(slot * t, (slot + 1) * t, k[:, new * t : (new + 1) * t], v[:, new * t : (new + 1) * t])

    def _store_pooled(self, ring: KVRing, k_pooled: torch.Tensor) -> None:
        """The kept slices' pooled keys, which the next call scores its windows against."""
        w = self.plan.windows_per_slice
        for new, slot in self.cache.writes:
            ring.pooled[:, :, slot * w : (slot + 1) * w] = k_pooled[:, :, new * w : (new + 1) * w]
