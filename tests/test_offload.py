"""DiT weights streamed from host memory: the same outputs, and chosen before tiling when memory is short."""

from __future__ import annotations

import pytest
import torch

from flashvsr.config import EngineConfig, SparseAttentionConfig, TilingConfig
from flashvsr.engine.memory import GB, estimate_stream
from flashvsr.engine.offload import StreamedBlocks
from flashvsr.engine.stream import StreamingEngine
from flashvsr.models.dit import DiTBlock
from flashvsr import pipeline as pipeline_module
from flashvsr.pipeline import Upscaler, plan_geometry

from .conftest import random_frames, tiny_models

H, W = 128, 256


def config(offload_weights: str = "auto", **tiling) -> EngineConfig:
    att = SparseAttentionConfig(sparse_ratio=2.0, local_range=3)
    return EngineConfig(
        attention=att, dtype="float32", device="cpu", offload_weights=offload_weights, tiling=TilingConfig(**tiling)
    )


def upscale_twice(eng: StreamingEngine) -> list[torch.Tensor]:
    """Two streams of different lengths, so block 0's early fetch for the next call is used."""
    outs = []
    for n, seed in ((25, 1), (9, 2)):
        frames = random_frames(n, H, W, seed=seed)
        state = eng.start(H, W)
        parts = [eng.push(state, frames[i : i + 4]) for i in range(0, n, 4)]
        outs.append(torch.cat(parts + [eng.finish(state)]))
    return outs


def test_streamed_weights_give_bit_identical_outputs():
    resident = upscale_twice(StreamingEngine(tiny_models(layers=3), config("off")))
    eng = StreamingEngine(tiny_models(layers=3), config("on"))
    assert eng.streams_weights
    streamed = upscale_twice(eng)
    for a, b in zip(resident, streamed):
        assert torch.equal(a, b)


def test_blocks_live_in_host_buffers_between_their_turns():
    models = tiny_models(layers=3)
    blocks = models.dit.blocks
    before = {n: p.clone() for n, p in blocks[1].named_parameters()}
    streamed = StreamedBlocks(blocks, "cpu", host_only=DiTBlock.CONDITIONING_ONLY)
    host = streamed.host[1]
    ffn = blocks[1].ffn[0].weight
    assert ffn.untyped_storage().data_ptr() == host.untyped_storage().data_ptr()
    with streamed(1):  # the block's weights are views of a device slot now, and block 2 is on its way
        slot = streamed.resident.index(1)
        assert ffn.untyped_storage().data_ptr() == streamed.slots[slot].untyped_storage().data_ptr()
        assert streamed.resident[1 - slot] == 2
    assert ffn.untyped_storage().data_ptr() == host.untyped_storage().data_ptr()
    for name, p in blocks[1].named_parameters():  # the values are the block's own, untouched
        assert torch.equal(p, before[name]), name
    # the conditioning-only weights are never copied: the slots hold the rest
    named = blocks[1].named_parameters()
    streamed_numel = sum(p.numel() for n, p in named if not n.startswith(DiTBlock.CONDITIONING_ONLY))
    assert host.numel() == streamed_numel < sum(p.numel() for p in blocks[1].parameters())


def test_mixed_dtypes_are_refused():
    blocks = tiny_models(layers=1).dit.blocks
    blocks[0].norm3.to(torch.float16)
    with pytest.raises(ValueError, match="one dtype"):
        StreamedBlocks(blocks, "cpu")


def scarce_memory(monkeypatch, up: Upscaler, fits_when_streamed: bool) -> None:
    """Pretend to be a GPU on which the 512×768 frame fits only with the weights streamed."""
    need = estimate_stream(up.models, up.config, 512, 768).stream
    freed = 10 * GB
    monkeypatch.setattr(up.engine, "streamable_bytes", lambda: 0 if up.engine.streams_weights else freed)

    def free(device, limit_gb=0.0):
        base = int(need * 0.85)
        return base + (need if fits_when_streamed else 0) if up.engine.streams_weights else base

    monkeypatch.setattr(pipeline_module, "plannable_bytes", free)


def test_auto_streams_weights_before_cutting_the_frame_into_tiles(monkeypatch):
    up = Upscaler(tiny_models(), config("auto"))
    scarce_memory(monkeypatch, up, fits_when_streamed=True)
    plan = up.tile_plan(plan_geometry(128, 192, 4.0))
    assert up.engine.streams_weights and plan.grid is None and plan.streamed_weights
    assert "DiT weights streamed from host memory" in plan.describe()


def test_auto_still_tiles_when_streaming_is_not_enough(monkeypatch):
    up = Upscaler(tiny_models(), config("auto"))
    scarce_memory(monkeypatch, up, fits_when_streamed=False)
    plan = up.tile_plan(plan_geometry(128, 192, 4.0))
    assert up.engine.streams_weights and plan.grid is not None and plan.grid.count > 1


@pytest.mark.parametrize("settings", [{"offload_weights": "off"}, {"tile": (256, 384)}])
def test_weights_stay_put_when_told_or_tiles_are_explicit(monkeypatch, settings):
    up = Upscaler(tiny_models(), config(**settings))
    scarce_memory(monkeypatch, up, fits_when_streamed=True)
    plan = up.tile_plan(plan_geometry(128, 192, 4.0))
    assert not up.engine.streams_weights and plan.grid is not None and not plan.streamed_weights


def test_unknown_offload_mode_is_refused():
    with pytest.raises(ValueError, match="offload_weights"):
        EngineConfig(offload_weights="sometimes")
