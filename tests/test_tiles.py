"""Spatial tiling and the memory planner: grids, blend weights, exactness, offload, planning."""

from __future__ import annotations

import pytest
import torch

from flashvsr.config import PIXEL_MULTIPLE, EngineConfig, SparseAttentionConfig, TilingConfig, official_config
from flashvsr.engine import tiles as tiles_module
from flashvsr.engine.memory import (
    DECODER_PAST_FRAMES, GB, MIN_TILE, SAFETY_FRACTION, NotEnoughMemory, estimate_stream, format_bytes, plan_tiles,
    plannable_bytes,
)  # fmt: skip
from flashvsr.engine import memory as memory_module
from flashvsr.engine.schedule import FIRST_CALL_LATENTS, LATENTS_PER_CALL
from flashvsr.engine.state import SeededNoise
from flashvsr.engine.stream import StreamingEngine
from flashvsr.engine.tiles import EngineStream, TiledStream, blend_weights, plan_axis, plan_grid
from flashvsr.models import FlashVSRModels

from .conftest import random_frames, tiny_models
from .test_engine import HeldBack

H, W = 128, 256
OFFICIAL_WEIGHTS_GB = 3.9
# H100, official model, bf16, 41 frames, decoder chunk 1 (benchmarks/memory_breakdown.py, session 7):
# (model height, width) → (held before the DiT, peak) in GB
OFFICIAL_MEASURED = {(768, 1408): (9.01, 11.08), (1152, 1920): (14.55, 18.79), (1536, 2560): (23.01, 30.54)}


def config(**tiling) -> EngineConfig:
    att = SparseAttentionConfig(sparse_ratio=2.0, local_range=3)
    return EngineConfig(attention=att, dtype="float32", device="cpu", tiling=TilingConfig(**tiling))


@pytest.fixture(scope="module")
def engine():
    return StreamingEngine(tiny_models(), config())


def run(stream, frames: torch.Tensor, push: int = 4) -> torch.Tensor:
    outs = [stream.push(frames[i : i + push]) for i in range(0, len(frames), push)]
    return torch.cat(outs + [stream.finish()])


@pytest.mark.parametrize(
    "size, tile, overlap", [(640, 384, 128), (1152, 512, 128), (2176, 896, 256), (384, 128, 0), (256, 512, 128)]
)
def test_tile_plans_cover_the_frame_on_the_128_grid(size, tile, overlap):
    origins = plan_axis(size, tile, overlap)
    tile = min(tile, size)
    assert origins[0] == 0 and origins[-1] + tile == size  # the last tile is flush with the edge
    assert all(o % PIXEL_MULTIPLE == 0 for o in origins)
    assert all(b - a <= tile - overlap for a, b in zip(origins, origins[1:]))  # overlaps at least as asked
    covered = torch.zeros(size, dtype=torch.bool)
    for o in origins:
        covered[o : o + tile] = True
    assert covered.all()
    with pytest.raises(ValueError, match="multiples of 128"):
        plan_grid(size, size, 100, 128, 0)


def test_blend_weights_sum_to_one_with_linear_ramps():
    grid = plan_grid(640, 1152, 384, 512, 128)
    assert (grid.ys, grid.xs) == ((0, 256), (0, 256, 640))  # spread on the 128 grid, last one flush
    total = torch.zeros(640, 1152, dtype=torch.float64)
    for (y, x, h, w), weight in zip(grid.boxes, blend_weights(grid)):
        assert weight.shape == (h, w) and weight.min() > 0
        total[y : y + h, x : x + w] += weight.double()
    assert (total - 1).abs().max() < 1e-6
    top_row = blend_weights(grid)[0][0].double()  # first tile, along x
    ramp = top_row[256:512]  # falls linearly across the 256 pixels it shares with the next tile
    steps = ramp[1:] - ramp[:-1]
    assert torch.allclose(steps, torch.full_like(steps, -1 / 256), atol=1e-6)
    assert top_row[:256].eq(1).all()


def test_one_tile_covering_the_frame_is_the_untiled_engine_exactly(engine):
    frames = random_frames(29, H, W, seed=1)
    content = (0, 0, 100, 200)
    untiled = run(EngineStream(engine, engine.start(H, W, content=content)), frames)
    tiled = run(TiledStream(engine, plan_grid(H, W, H, W, 0), content), frames, push=3)
    assert tiled.shape == (29, 3, 100, 200)
    assert torch.equal(untiled, tiled)


def test_two_by_two_tiles_are_close_to_untiled(engine):
    size = 3 * PIXEL_MULTIPLE
    frames = random_frames(21, size, size, seed=2)  # smooth input
    untiled = run(EngineStream(engine, engine.start(size, size)), frames)
    grid = plan_grid(size, size, 256, 256, 128)
    assert grid.count == 4
    tiled = run(TiledStream(engine, grid), frames)
    other_seed = run(EngineStream(engine, engine.start(size, size, noise=SeededNoise(7))), frames)
    assert tiled.shape == untiled.shape == (21, 3, size, size)
    difference = (tiled - untiled).abs().mean().item()
    assert difference < 0.04  # measured 0.019 (colour range 2)
    assert difference < (other_seed - untiled).abs().mean().item() / 5  # a fifth of what the noise seed changes


def test_offloading_idle_tiles_changes_nothing(engine, monkeypatch):
    frames = random_frames(36, H, W, seed=3)
    grid = plan_grid(H, W, 128, 128, 0)
    resident = run(TiledStream(engine, grid), frames)
    moves = []
    real_move = tiles_module.move_state
    counted = lambda state, device: moves.append(str(device)) or real_move(state, device)  # noqa: E731
    monkeypatch.setattr(tiles_module, "move_state", counted)
    stream = TiledStream(engine, grid, offload=True)
    offloaded = run(stream, frames)
    assert torch.equal(resident, offloaded)
    # 2 tiles parked at start, then each in and out once per DiT-call dispatch (call 0, call 1, finish)
    assert len(moves) == 2 + 2 * 2 * 3
    assert all(t.state.kv.k.device.type == "cpu" for t in stream.tiles)


def test_parked_tiles_with_overlapped_decoding_settle_first_and_match(engine, monkeypatch):
    """With decoding beside the DiT, a tile's frames come out one call later, and its state is
    parked only after the engine has ordered the copy behind its decoding."""
    frames = random_frames(36, H, W, seed=3)
    grid = plan_grid(H, W, 128, 128, 0)
    resident = run(TiledStream(engine, grid), frames)
    held = StreamingEngine(engine.models, engine.config)
    held.decoding = HeldBack()
    outs = []
    stream = TiledStream(held, grid, offload=True)
    for i in range(0, len(frames), 4):
        outs.append(stream.push(frames[i : i + 4]))
    assert sum(o.shape[0] for o in outs) == 21  # call 1's frames still in flight
    outs.append(stream.finish())
    assert torch.equal(resident, torch.cat(outs))
    assert held.decoding.settled >= 2 * 2  # each tile, each time it was parked with a decode in flight


def test_planner_tiles_only_when_memory_is_scarce():
    models, cfg = tiny_models(), config()
    whole = estimate_stream(models, cfg, 512, 768)
    assert plan_tiles(None, 512, 768, models, cfg).grid is None  # CPU: no limit
    roomy = plan_tiles(whole.stream * 2, 512, 768, models, cfg)
    assert roomy.grid is None and "fits" in roomy.describe()
    free = int(whole.stream * 0.7)
    plan = plan_tiles(free, 512, 768, models, cfg)
    assert plan.grid is not None and plan.grid.count > 1 and plan.needed <= free * SAFETY_FRACTION
    assert plan.grid.tile_h >= MIN_TILE and plan.grid.tile_w % PIXEL_MULTIPLE == 0
    assert plan.describe().startswith(f"tiling: {plan.grid.describe()}, overlap 128 px")
    forced = plan_tiles(whole.stream * 2, 512, 768, models, config(offload=True))
    assert forced.offload and forced.grid.count > 1


def test_planner_says_what_is_needed_when_nothing_fits():
    models, cfg = tiny_models(), config()
    whole = estimate_stream(models, cfg, 512, 768)
    free = int(whole.stream / 20)
    with pytest.raises(NotEnoughMemory) as err:
        plan_tiles(free, 512, 768, models, cfg)
    message = str(err.value)
    assert isinstance(err.value, ValueError)
    assert format_bytes(whole.stream) in message and f"{format_bytes(free)} is free" in message
    assert "768×512" in message and "--tile" in message and "--device cpu" in message


def test_explicit_and_off_settings_are_followed():
    models = tiny_models()
    assert plan_tiles(1, 512, 768, models, config(tile="off")).grid is None
    plan = plan_tiles(None, 512, 768, models, config(tile=(256, 384), overlap=128))
    assert (plan.grid.tile_h, plan.grid.tile_w, plan.grid.count) == (256, 384, 9)
    assert plan_tiles(None, 256, 256, models, config(tile=(512, 512))).grid is None  # one tile: untiled path
    with pytest.raises(ValueError, match="multiples of 128"):
        TilingConfig(tile=(100, 128))


@pytest.mark.parametrize("size", sorted(OFFICIAL_MEASURED))
def test_estimate_matches_h100_measurements_of_the_official_model(size):
    models = official_bf16_models()
    estimate = estimate_stream(models, EngineConfig(dtype="bfloat16"), *size)
    held, peak = (gb + spare_slot_gb(*size) for gb in OFFICIAL_MEASURED[size])
    assert estimate.held / GB == pytest.approx(held - OFFICIAL_WEIGHTS_GB, rel=0.05)
    assert estimate.stream / GB == pytest.approx(peak - OFFICIAL_WEIGHTS_GB, rel=0.05)
    assert 3.3 < estimate.weights / GB < OFFICIAL_WEIGHTS_GB  # parameters only; the rest is CUDA's own


def spare_slot_gb(height: int, width: int) -> float:
    """The KV pool's spare slot, added after those measurements (session 15): one time slice's
    keys and values in bf16 and its pooled keys in float32."""
    tokens = 2 * (height // 16) * (width // 16)
    return tokens * 1536 * (2 * 2 + 4 / 128) / GB


def official_bf16_models() -> FlashVSRModels:
    models = FlashVSRModels.build(official_config(), decoders=("tiny",), device="meta")
    for module in models.modules().values():
        module.to(dtype=torch.bfloat16)
    models.context = models.context.to(torch.bfloat16)
    return models


# H100, 1408×768, 41 frames (benchmarks/device_offload.sh, session 7): peak with the decoder two frames at a
# time, and with the fp8 KV cache
LOW_MEMORY_MEASURED = {"chunk2": (2, "model", 12.39), "chunk1_fp8": (1, "fp8", 8.73)}


@pytest.mark.parametrize("case", list(LOW_MEMORY_MEASURED))
def test_estimate_follows_the_low_memory_settings(case):
    chunk, kv_cache, peak = LOW_MEMORY_MEASURED[case]
    cfg = EngineConfig(dtype="bfloat16", decoder_frame_chunk=chunk, attention=SparseAttentionConfig(kv_cache=kv_cache))
    estimate = estimate_stream(official_bf16_models(), cfg, 768, 1408)
    assert estimate.stream / GB == pytest.approx(peak - OFFICIAL_WEIGHTS_GB, rel=0.05)


def test_a_memory_limit_plans_as_on_a_smaller_card(monkeypatch):
    """``--memory-limit 24`` on an 80 GB GPU: what the planner may use is 24 GB minus what is
    allocated already (the weights), never more than is actually free."""
    monkeypatch.setattr(memory_module, "device_free_bytes", lambda device: 70 * GB if device.type == "cuda" else None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 4 * GB)
    cuda = torch.device("cuda")
    assert plannable_bytes(cuda) == 70 * GB
    assert plannable_bytes(cuda, 24.0) == 20 * GB
    assert plannable_bytes(cuda, 100.0) == 70 * GB
    assert plannable_bytes(cuda, 2.0) == 0
    assert plannable_bytes(torch.device("cpu"), 24.0) is None
    with pytest.raises(ValueError, match="memory limit"):
        TilingConfig(memory_limit_gb=-1)


def test_estimate_counts_the_decoder_head_memory():
    """A decoder with ``head_memory`` holds its head's last full-resolution input per stream."""
    from dataclasses import replace

    plain = official_bf16_models()
    with_memory = official_bf16_models()
    with_memory.config = replace(plain.config, tc_decoder=replace(plain.config.tc_decoder, head_memory=True))
    cfg = EngineConfig(dtype="bfloat16")
    extra = estimate_stream(with_memory, cfg, 768, 1408).held - estimate_stream(plain, cfg, 768, 1408).held
    bf16 = 2
    assert extra == pytest.approx(DECODER_PAST_FRAMES * plain.config.tc_decoder.channels[-1] * bf16 * 768 * 1408, abs=1)


def test_overlapped_decoding_plans_for_the_dit_and_the_decoder_at_once():
    models = official_bf16_models()
    # fixed KV slots: the slot that roaming adds is tested apart (test_attention.py)
    plan = lambda device, overlap: estimate_stream(  # noqa: E731
        models, EngineConfig(dtype="bfloat16", device=device, overlap_decode=overlap, roaming_kv_slots=False), 768, 1408
    )
    alone, both = plan("cuda", False), plan("cuda", True)
    assert both.held == alone.held and both.transient > alone.transient
    # a call's decoder beside the next call's DiT, a steady one; call 0's DiT (three times as large) runs alone
    pixels, cfg = 768 * 1408, EngineConfig(dtype="bfloat16", device="cuda")
    first, steady = (memory_module._dit_live_per_pixel(models, 2, n) * pixels for n in (FIRST_CALL_LATENTS, LATENTS_PER_CALL))
    decoder = memory_module._decoder_per_pixel(models, cfg, 2)[1] * pixels
    assert first == 3 * steady
    assert alone.transient == pytest.approx(max(first, decoder), abs=1)
    assert both.transient == pytest.approx(max(first, decoder + steady), abs=1)
    assert both.transient < first + decoder  # the two peaks never meet
    tile = estimate_stream(models, EngineConfig(dtype="bfloat16", device="cuda", overlap_decode=True), 768, 1408, tiled=True)
    assert tile.transient == pytest.approx(first + decoder, abs=1)  # except where another tile's first call runs beside
    assert plan("cpu", True) == plan("cpu", False)  # no second stream on the CPU
