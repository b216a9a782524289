"""The streaming engine: LQ frames in, super-resolved frames out, at constant memory.

Data flows one way per DiT call (SPEC §5):

    LQ frames ─► LR projection (4-frame clips) ─► tokens ─┐
    noise latents ─────────────────────────────► DiT (LCSA, KV cache) ─► latents
    latents + LQ frames ─► TC decoder (or Wan VAE) ─► colour fix ─► [stabilizer] ─► output frames

Frames are emitted as soon as they are final (21 after the first call, then 8 per call), or
with ``overlap_decode`` on a GPU one call later: each call's decoding then runs on a second
CUDA stream beside the next call's DiT (engine/overlap.py). All per-stream data lives in a
:class:`StreamState`; the engine itself holds only the models and the video-independent
conditioning, so one engine can serve many streams.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator

import torch

from ..attention.backends import resolve_backend, takes_columns
from ..attention.kv_writes import INLINE, KVWrites, kv_writes_for
from ..attention.lcsa import (
    JOINED_MAX_ELEMENTS,
    AttentionPlan,
    BlockChooser,
    CachePlan,
    KVPool,
    SlotHomes,
    SlotTable,
    SparseCallAttention,
    choose_blocks,
)
from ..attention.masks import window_permutation
from ..colorfix import color_fix
from ..config import PIXEL_MULTIPLE, TOKEN_PIXELS, VAE_SPATIAL_FACTOR, VAE_TEMPORAL_FACTOR, WINDOW, EngineConfig
from ..kernels import check_kernels
from ..models import FlashVSRModels
from ..models.dit import DiTBlock, resident_weights
from ..models.fp8_linear import FP8_MIN_CAPABILITY, use_fp8_linears
from ..stabilizer import stabilize
from ..transfer import to_device
from .offload import SLOTS, StreamedBlocks
from .overlap import Decoding, InFlight, decoding_for
from .schedule import CallPlan, calls_to_cover, plan_call
from .state import NoiseSource, SeededNoise, StreamState, StreamTracer
from .timing import NullClock, StageClock

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
    return DTYPES[name]


def roaming_wanted(config: EngineConfig) -> bool:
    """Roaming KV slots asked for (or by ``overlap_decode``) and not ruled out by the settings: CUDA graphs
    replay fixed slots, and the fp8 cache is read in two parts."""
    return config.roams_kv_slots and not config.cuda_graphs and config.attention.kv_cache != "fp8"


class StreamingEngine:
    def __init__(self, models: FlashVSRModels, config: EngineConfig):
        if config.variant == "tiny" and models.tc_decoder is None:
            raise ValueError("the tiny variant needs the TC decoder, which this model lacks")
        if config.variant == "full" and models.vae is None:
            raise ValueError("the full variant needs the Wan VAE decoder, which this model lacks")
        self.models = models
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = resolve_dtype(config.dtype)
        self.kernel = resolve_backend(config.attention_backend, self.device, dtype=self.dtype)
        for problem in check_kernels(self.device, compiled=config.compile):  # once per process and GPU
            warnings.warn(problem, stacklevel=2)
        self.clock: StageClock = NullClock()  # benchmarks install a timing clock here
        self.block_chooser: BlockChooser = choose_blocks
        self.color_fixer: Callable[..., torch.Tensor] = color_fix
        self.decoding: Decoding = decoding_for(self.device, config.overlap_decode)
        self.kv_writes: KVWrites = kv_writes_for(self.device, config.copies_kv_aside)
        if config.linears == "fp8":
            self._use_fp8_linears(models)
        self._speed_up(models, config)
        with torch.no_grad():
            self.conditioning = models.dit.condition(models.context)
        self.block_weights = resident_weights
        if config.offload_weights == "on":
            self.stream_weights()

    # -- where the DiT's weights live ------------------------------------------------------------
    @property
    def streams_weights(self) -> bool:
        return isinstance(self.block_weights, StreamedBlocks)

    def stream_weights(self) -> None:
        """Move the DiT blocks' weights to host memory; each DiT call streams them back block
        by block (the same outputs, ≈ 2.6 GB less device memory for the official model). Later
        streams keep it so: an engine does not move weights back and forth between streams."""
        if self.streams_weights:
            return
        self.block_weights = StreamedBlocks(self.models.dit.blocks, self.device, host_only=DiTBlock.CONDITIONING_ONLY)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()  # hand the blocks' device memory back for streams (and other programs)

    def streamable_bytes(self) -> int:
        """Device memory that :meth:`stream_weights` would free (the blocks' weights, less the
        block buffers it keeps)."""
        if self.streams_weights or self.device.type == "cpu" or self.config.linears == "fp8":
            return 0
        blocks = [list(b.parameters()) for b in self.models.dit.blocks]
        sizes = [sum(p.numel() * p.element_size() for p in ps) for ps in blocks]
        return sum(sizes) - SLOTS * max(sizes)

    def _use_fp8_linears(self, models: FlashVSRModels) -> None:
        """The DiT blocks' linears in e4m3 (lossy): on a GPU only where it has FP8 tensor cores and
        computes in bfloat16; on the CPU (tests, evaluation) at any dtype."""
        if self.device.type == "cuda":
            if torch.cuda.get_device_capability(self.device) < FP8_MIN_CAPABILITY:
                raise ValueError("FP8 linears need a GPU with FP8 tensor cores (Ada, Hopper or newer)")
            if self.dtype != torch.bfloat16:
                raise ValueError("FP8 linears on a GPU compute in bfloat16: use --dtype bfloat16")
        use_fp8_linears(models.dit.blocks)

    def _speed_up(self, models: FlashVSRModels, config: EngineConfig) -> None:
        if self.device.type != "cuda":
            return
        if config.compile:
            models.dit.compile_blocks(gelu_epilogue=True, dynamic=False)  # shapes settle after the first calls
            self.block_chooser = torch.compile(choose_blocks, dynamic=False)  # fuses pooling and selection
            models.lq_proj.compile_norms(dynamic=False)
            self.color_fixer = torch.compile(color_fix)  # one or two kernels instead of ten full-size float32 passes
        if self._decoder_channels_last and models.tc_decoder is not None:
            models.tc_decoder.to(memory_format=torch.channels_last)  # cuDNN's native layout: no conversions
        models.lq_proj.store_weights_for_2d()  # the same values, laid out as cuDNN wants them

    @property
    def _decoder_channels_last(self) -> bool:
        return self.config.decoder_channels_last and self.device.type == "cuda"

    # -- stream lifecycle ------------------------------------------------------------------------
    def start(
        self,
        height: int,
        width: int,
        content: tuple[int, int, int, int] | None = None,
        noise: NoiseSource | None = None,
        tracer: StreamTracer | None = None,
    ) -> StreamState:
        """A new stream of ``height × width`` model frames (multiples of 128). ``content`` is
        the (y0, x0, h, w) box of real pixels that is colour-fixed and returned."""
        if height % PIXEL_MULTIPLE or width % PIXEL_MULTIPLE or height <= 0 or width <= 0:
            raise ValueError(f"model frame size must be a positive multiple of {PIXEL_MULTIPLE}, got {height}×{width}")
        att = self.config.attention
        plan = AttentionPlan.build(
            height // TOKEN_PIXELS,
            width // TOKEN_PIXELS,
            att.local_range,
            att.topk_ratio_for(height, width),
            att.kv_slices,
            device=self.device,
            kv_cache=att.kv_cache,
        )
        return StreamState(
            height=height,
            width=width,
            content=content or (0, 0, height, width),
            attention=plan,
            noise=noise or SeededNoise(self.config.seed),
            kv=None,
            slots=SlotTable(plan.cache_capacity),
            decoder=self._start_decoder(),
            tracer=tracer,
        )

    @torch.no_grad()
    def push(self, state: StreamState, frames: torch.Tensor) -> torch.Tensor:
        """Add LQ frames (T, 3, H, W) in [-1, 1]; returns the output frames now final,
        (T', 3, h, w) in [-1, 1] for the content box (T' may be 0)."""
        if state.finished:
            raise RuntimeError("this stream is finished; start a new one")
        self._check_frames(state, frames)
        state.lq.extend(frames.to(self.device, self.dtype).unbind(0))
        state.received += frames.shape[0]
        return self._run_ready_calls(state, limit=None)

    @torch.no_grad()
    def finish(self, state: StreamState) -> torch.Tensor:
        """End of input: pad with copies of the last frame, run the remaining calls and
        return the rest of the output, so that exactly as many frames come out as went in."""
        if state.finished:
            raise RuntimeError("this stream is already finished")
        if state.received == 0:
            raise ValueError("no frames were pushed to this stream")
        state.finished = True
        last_plan = plan_call(calls_to_cover(state.received) - 1)
        missing = last_plan.lq_needed - (state.lq_offset + len(state.lq))
        state.lq.extend([state.lq[-1]] * max(0, missing))
        return self._run_ready_calls(state, limit=state.received)

    def run(self, frames: Iterable[torch.Tensor], height: int, width: int, **start_kwargs) -> Iterator[torch.Tensor]:
        """Convenience: stream an iterable of (T, 3, H, W) batches, yielding output batches."""
        state = self.start(height, width, **start_kwargs)
        for batch in frames:
            out = self.push(state, batch)
            if out.shape[0]:
                yield out
        out = self.finish(state)
        if out.shape[0]:
            yield out

    # -- one DiT call ----------------------------------------------------------------------------
    def _run_ready_calls(self, state: StreamState, limit: int | None) -> torch.Tensor:
        while plan_call(state.calls).lq_needed <= state.lq_offset + len(state.lq):
            plan = plan_call(state.calls)
            if limit is not None and plan.decode[0] >= limit:
                break
            state.in_flight.append(self._run_call(state, plan))
            state.calls += 1
            self._release_lq(state, plan_call(state.calls).decode[0])
        held = 0 if limit is not None else self.decoding.calls_held  # the stream's end hands out everything
        ready = state.in_flight[: max(0, len(state.in_flight) - held)]
        del state.in_flight[: len(ready)]
        outputs = [self.decoding.collect(item) for item in ready]
        y0, x0, h, w = state.content
        out = torch.cat(outputs, dim=0) if outputs else torch.zeros(0, 3, h, w, device=self.device, dtype=self.dtype)
        if limit is not None:
            out = out[: max(0, limit - state.emitted)]
        state.emitted += out.shape[0]
        return out

    def settle(self, state: StreamState) -> None:
        """Order the caller's GPU stream after every decode this stream has in flight, so its
        tensors may be copied (parked) safely."""
        if state.in_flight:
            self.decoding.settle()

    def _run_call(self, state: StreamState, plan: CallPlan) -> InFlight:
        latents = self._denoise(state, plan)
        lq = self._lq_clip(state, *plan.decode)
        return self.decoding.submit(lambda: self._output_frames(state, plan, latents, lq), (latents, lq))

    def _output_frames(self, state: StreamState, plan: CallPlan, latents: torch.Tensor, lq: torch.Tensor):
        """Decode one call's latents and colour-fix them: (T, 3, h, w) for the content box."""
        frames = self._decode(state, plan, latents, lq)
        if state.tracer and state.tracer.on_decoded:
            state.tracer.on_decoded(plan.index, frames)
        y0, x0, h, w = state.content
        lq = lq[..., y0 : y0 + h, x0 : x0 + w]
        with self.clock.section("color_fix"):
            fixed = self.color_fixer(frames[..., y0 : y0 + h, x0 : x0 + w], lq, self.config.color_fix)
            fixed = fixed[0].transpose(0, 1)
        if not self.config.stabilizer.on:
            return fixed
        with self.clock.section("stabilize"):
            out, state.stabilizer = stabilize(fixed, lq[0].transpose(0, 1), state.stabilizer, self.config.stabilizer)
        return out

    def _denoise(self, state: StreamState, plan: CallPlan) -> torch.Tensor:
        """LR projection + one DiT step: latents of this call (1, 16, n, H/8, W/8), float32."""
        with self.clock.section("lq_proj"):
            tokens = self._lq_tokens(state, plan)
        h, w = state.latent_shape
        noise = state.noise(plan.latent_start, plan.latent_count, (self.models.dit.cfg.in_channels, h, w))
        noise = to_device(noise, self.device)  # drawn on the host: the same numbers on every device
        on_mask = None
        if state.tracer and state.tracer.on_mask:
            on_mask = lambda layer, mask: state.tracer.on_mask(plan.index, layer, mask)  # noqa: E731
        att = state.attention
        cache = state.slots.plan(plan.latent_count // WINDOW[0], att.kv_slices)
        graphs = self._graphs_usable(state, cache, on_mask)
        writes = INLINE if graphs else self.kv_writes  # a captured call keeps its copies on its own stream
        pool = self._kv_pool(state)
        attention = SparseCallAttention(att, pool, cache, self.kernel, on_mask, self.block_chooser, writes, state.homes)
        order = window_permutation(plan.latent_count, att.tokens_h, att.tokens_w, self.device)
        dit = self.models.dit

        def transformer(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
            x = dit.forward_tokens(x, self.conditioning, (cos, sin), attention, self.block_weights)
            attention.finish()
            return x

        with self.clock.section("dit"):
            x, (cos, sin), grid = dit.embed(noise.to(self.dtype), tokens, plan.latent_start, order)
            if graphs:
                x = state.graphs.run((x.shape, cache), transformer, (x, cos, sin))
            else:
                x = transformer(x, cos, sin)
            velocity = dit.unembed(x, grid, order)
        state.slots.order = list(cache.after)
        state.homes = attention.homes_after or state.homes
        latents = noise - velocity.float()
        if state.tracer and state.tracer.on_latents:
            state.tracer.on_latents(plan.index, latents)
        return latents

    def _kv_pool(self, state: StreamState) -> KVPool:
        """The stream's KV pool, allocated by its first call: every layer's ring and the spare slot
        (roaming: a free slot for each half of the layers)."""
        if state.kv is None:
            roaming = self._may_roam(state)
            state.kv = self._allocate_pool(state, self.device, roaming)
            state.homes = SlotHomes.start(state.kv) if roaming else None
        return state.kv

    def _allocate_pool(self, state: StreamState, device, roaming: bool) -> KVPool:
        cfg, layers = self.models.dit.cfg, len(self.models.dit.blocks)
        return KVPool.allocate(state.attention, layers, 1, cfg.num_heads, cfg.head_dim, self.dtype, device, roaming)

    def _may_roam(self, state: StreamState) -> bool:
        """Roaming slots need every steady call on the one-call path: a kernel that takes columns, the
        exact cache, a half of the pool within the kernel's reach, and no CUDA graphs (they replay fixed slots)."""
        if not (roaming_wanted(self.config) and takes_columns(self.kernel)):
            return False
        sized = self._allocate_pool(state, torch.device("meta"), roaming=True)  # shapes only
        return sized.largest_span_elements <= JOINED_MAX_ELEMENTS

    def _graphs_usable(self, state: StreamState, cache: CachePlan, on_mask) -> bool:
        """CUDA graphs replay fixed memory: not while weights stream through shared slots, not
        for the first call (it fills the KV rings), not when a tracer inspects masks."""
        return (
            self.config.cuda_graphs
            and self.device.type == "cuda"
            and not self.streams_weights
            and on_mask is None
            and bool(cache.read)
        )

    def _lq_tokens(self, state: StreamState, plan: CallPlan) -> torch.Tensor:
        """LR-projection tokens of this call's latent frames, (1, n·h·w, dim)."""
        tokens = []
        for a, b in plan.lq_clips:
            clip = self._lq_clip(state, a, b)
            if b - a < VAE_TEMPORAL_FACTOR:  # the priming clip: frame 0 repeated
                clip = clip[:, :, :1].expand(-1, -1, VAE_TEMPORAL_FACTOR, -1, -1)
            out, state.lq_proj = self.models.lq_proj.step(state.lq_proj, clip)
            if out is not None:
                tokens.append(out)
        return torch.cat(tokens, dim=1)

    def _decode(self, state: StreamState, plan: CallPlan, latents: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        with self.clock.section("decode"):
            return self._decode_frames(state, plan, latents, lq)

    def _decode_frames(self, state: StreamState, plan: CallPlan, latents: torch.Tensor, lq: torch.Tensor):
        """Frames of this call's latents, (1, 3, T, H, W); ``lq`` holds the LQ frames they cover."""
        latents = latents.to(self.dtype)
        if self.config.variant == "full":
            frames, state.decoder = self.models.vae.decode_step(state.decoder, latents)
            return frames
        a, b = plan.decode
        short = VAE_TEMPORAL_FACTOR * plan.latent_count - (b - a)  # the stream's first group
        if short:
            lq = torch.cat([lq[:, :, :1].expand(-1, -1, short, -1, -1), lq], dim=2)
        chunk = self.config.decoder_frame_chunk
        frames, state.decoder = self.models.tc_decoder.decode(
            state.decoder, latents, lq, frame_chunk=chunk, channels_last=self._decoder_channels_last,
            fused=self.config.compile,
        )
        return frames

    # -- helpers ---------------------------------------------------------------------------------
    def _start_decoder(self):
        if self.config.variant == "full":
            return self.models.vae.start_decode()
        return self.models.tc_decoder.start()

    def _lq_clip(self, state: StreamState, a: int, b: int) -> torch.Tensor:
        """Pending LQ frames [a, b) as (1, 3, b−a, H, W)."""
        i, j = a - state.lq_offset, b - state.lq_offset
        if i < 0 or j > len(state.lq):
            raise RuntimeError(f"LQ frames [{a}, {b}) are not pending (have {state.lq_offset}…)")
        return torch.stack(state.lq[i:j], dim=1)[None]

    def _release_lq(self, state: StreamState, keep_from: int) -> None:
        drop = keep_from - state.lq_offset
        if drop > 0:
            del state.lq[:drop]
            state.lq_offset += drop

    def _check_frames(self, state: StreamState, frames: torch.Tensor) -> None:
        if frames.ndim != 4 or frames.shape[1] != 3 or tuple(frames.shape[2:]) != (state.height, state.width):
            raise ValueError(
                f"expected LQ frames of shape (T, 3, {state.height}, {state.width}), got {tuple(frames.shape)}"
            )
        if not frames.is_floating_point():
            raise TypeError("LQ frames must be floating point in [-1, 1]")


def model_frame_size(height: int, width: int) -> tuple[int, int]:
    """Smallest model frame (multiples of 128) that holds ``height × width`` pixels."""
    up = lambda v: -(-v // PIXEL_MULTIPLE) * PIXEL_MULTIPLE  # noqa: E731
    return up(height), up(width)


__all__ = ["StreamingEngine", "model_frame_size", "resolve_dtype", "VAE_SPATIAL_FACTOR"]
