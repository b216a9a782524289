"""The motion-gated stabilizer: still regions steady, moving ones untouched, streamed exactly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from flashvsr.config import STABILIZER_OFF, STABILIZER_ON, EngineConfig, ModelConfig, StabilizerConfig, resolve_stabilizer
from flashvsr.engine.memory import estimate_stream
from flashvsr.engine.stream import StreamingEngine
from flashvsr.pipeline import Upscaler
from flashvsr.stabilizer import LEVELS_PER_UNIT, StabilizerMemory, gaussian_blur, stabilize
from flashvsr.weights.loading import save_model

from .conftest import random_frames, tiny_models

H, W = 128, 256
ON = StabilizerConfig(strength=0.95, threshold=1.0, blur_sigma=2.0)


def flickering(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A still picture whose output flickers by ±4 levels per frame, and its unchanging LQ."""
    g = torch.Generator().manual_seed(seed)
    picture = torch.rand(1, 3, 32, 48, generator=g) * 2 - 1
    flicker = (torch.rand(n, 3, 32, 48, generator=g) * 2 - 1) * 4 / LEVELS_PER_UNIT
    return picture + flicker, picture.expand(n, -1, -1, -1)


def test_still_regions_stop_flickering():
    frames, lq = flickering(20)
    out, _ = stabilize(frames, lq, StabilizerMemory(), ON)
    assert torch.equal(out[0], frames[0])  # nothing to keep yet
    change_in = (frames[1:] - frames[:-1]).abs().mean()
    change_out = (out[10:] - out[9:-1]).abs().mean()  # the steady state
    assert change_out < change_in / 10


def test_moving_regions_pass_unchanged():
    frames, lq = flickering(6)
    ramp = torch.arange(6).view(6, 1, 1, 1) * (20 / LEVELS_PER_UNIT)  # the LQ brightens by 20 levels a frame
    out, _ = stabilize(frames, lq + ramp, StabilizerMemory(), ON)
    assert torch.equal(out, frames)


def test_the_kept_share_follows_the_lq_change_locally():
    frames, lq = flickering(2)
    lq = lq.clone()
    lq[1, :, :, 24:] += 30 / LEVELS_PER_UNIT  # the right half changes, the left does not
    out, _ = stabilize(frames, lq, StabilizerMemory(), ON)
    assert torch.equal(out[1, :, :, 36:], frames[1, :, :, 36:])  # beyond the blur's reach of the edge
    left = out[1, :, :, :12]
    assert torch.allclose(left, torch.lerp(frames[1, :, :, :12], frames[0, :, :, :12], 0.95), atol=1e-6)


def test_streaming_in_pieces_gives_the_same_frames():
    frames, lq = flickering(17, seed=3)
    whole, _ = stabilize(frames, lq, StabilizerMemory(), ON)
    memory, pieces = StabilizerMemory(), []
    for a, b in ((0, 5), (5, 6), (6, 17)):
        out, memory = stabilize(frames[a:b], lq[a:b], memory, ON)
        pieces.append(out)
    assert torch.equal(torch.cat(pieces), whole)
    assert memory.lq.data_ptr() != lq.data_ptr()  # holds a copy of one frame, not the caller's clip


def test_off_returns_the_frames_as_they_are():
    frames, lq = flickering(3)
    out, memory = stabilize(frames, lq, StabilizerMemory(), STABILIZER_OFF)
    assert out is frames and memory.frame is None


def test_the_blur_keeps_a_constant_and_the_total():
    x = torch.zeros(1, 1, 20, 30)
    x[0, 0, 10, 15] = 1.0
    blurred = gaussian_blur(x, 2.0)
    assert blurred.shape == x.shape and abs(blurred.sum().item() - 1.0) < 1e-5
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 9, 9), 3.0), 2.0), torch.full((1, 1, 9, 9), 3.0))
    assert gaussian_blur(x, 0) is x


def test_settings_are_checked():
    for bad in ({"strength": 1.0}, {"strength": -0.1}, {"threshold": 0.0}, {"blur_sigma": -1.0}):
        with pytest.raises(ValueError):
            StabilizerConfig(**bad)


def test_auto_follows_the_model_and_on_off_override_it():
    mine = StabilizerConfig(strength=0.8, threshold=2.0)
    assert resolve_stabilizer("auto", mine) == mine
    assert resolve_stabilizer("auto", STABILIZER_OFF) == STABILIZER_OFF  # official weights: outputs unchanged
    assert resolve_stabilizer("on", STABILIZER_OFF) == STABILIZER_ON
    assert resolve_stabilizer("on", mine) == mine
    assert resolve_stabilizer("off", mine) == STABILIZER_OFF
    assert resolve_stabilizer(ON, STABILIZER_OFF) == ON
    with pytest.raises(ValueError, match="stabilize must be one of"):
        resolve_stabilizer("sometimes", mine)


def test_a_model_folder_carries_its_recommendation(tmp_path):
    models = tiny_models(decoders=("tiny",))
    models.config = dataclasses.replace(models.config, stabilizer=ON)
    folder = save_model(models, tmp_path / "stable")
    assert ModelConfig.from_dict(models.config.to_dict()).stabilizer == ON
    assert Upscaler.load(folder, device="cpu", dtype="float32").config.stabilizer == ON
    assert Upscaler.load(folder, device="cpu", dtype="float32", stabilize="off").config.stabilizer == STABILIZER_OFF
    plain = save_model(tiny_models(decoders=("tiny",)), tmp_path / "plain")
    assert Upscaler.load(plain, device="cpu", dtype="float32").config.stabilizer == STABILIZER_OFF


def _engine(stabilizer: StabilizerConfig) -> StreamingEngine:
    cfg = EngineConfig(dtype="float32", device="cpu", stabilizer=stabilizer)
    return StreamingEngine(tiny_models(decoders=("tiny",)), cfg)


def _run(eng: StreamingEngine, frames: torch.Tensor, push: int) -> torch.Tensor:
    state = eng.start(H, W)
    outs = [eng.push(state, frames[i : i + push]) for i in range(0, len(frames), push)]
    return torch.cat([*outs, eng.finish(state)])


def test_the_engine_filters_its_colour_fixed_frames_in_stream_order():
    frames = random_frames(30, H, W, seed=5)
    plain = _run(_engine(STABILIZER_OFF), frames, push=30)
    steady = _engine(ON)
    expected, _ = stabilize(plain, frames, StabilizerMemory(), ON)
    assert torch.allclose(_run(steady, frames, push=30), expected, atol=1e-6)
    assert torch.equal(_run(steady, frames, push=3), _run(steady, frames, push=30))  # the memory carries over calls


def test_the_memory_planner_counts_the_stabilizer():
    models = tiny_models(decoders=("tiny",))
    off = estimate_stream(models, EngineConfig(dtype="float32"), H, W)
    on = estimate_stream(models, EngineConfig(dtype="float32", stabilizer=ON), H, W)
    assert on.held - off.held == H * W * 3 * (4 + 4)  # the previous output (float32) and LQ frame (float32 here)


def test_parked_tiles_keep_their_stabilizer_memory():
    from flashvsr.engine.tiles import TiledStream, plan_grid

    eng = _engine(ON)
    frames = random_frames(30, H, W, seed=6)
    grid = plan_grid(H, W, 128, 128, 0)

    def run(stream):
        outs = [stream.push(frames[i : i + 4]) for i in range(0, len(frames), 4)]
        return torch.cat([*outs, stream.finish()])

    resident = run(TiledStream(eng, grid))
    parked = TiledStream(eng, grid, offload=True)
    assert torch.equal(run(parked), resident)
    assert all(t.state.stabilizer.frame is not None for t in parked.tiles)
