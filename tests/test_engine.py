"""The streaming engine: exact frame counts, chunking invariance, causality, bounded state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashvsr.colorfix import adain, wavelet, wavelet_bands
from flashvsr.config import EngineConfig, SparseAttentionConfig
from flashvsr.engine.schedule import calls_to_cover, plan_call, reference_frame_count
from flashvsr.engine.overlap import InlineDecoding, SideStreamDecoding, decoding_for, first_stream_for, running_on
from flashvsr.engine.stream import StreamingEngine, model_frame_size

from .conftest import random_frames, tiny_models

H, W = 128, 256


def engine(variant="tiny", release="v1.1", **attention):
    att = SparseAttentionConfig(**{"sparse_ratio": 2.0, "local_range": 3, **attention})
    cfg = EngineConfig(attention=att, variant=variant, dtype="float32", device="cpu", color_fix="adain")
    return StreamingEngine(tiny_models(release), cfg)


def upscale(eng, frames, push=4, **start):
    state = eng.start(H, W, **start)
    outs = [eng.push(state, frames[i : i + push]) for i in range(0, len(frames), push)]
    outs.append(eng.finish(state))
    return torch.cat(outs), state


@pytest.fixture(scope="module")
def tiny_engine():
    return engine()


@pytest.mark.parametrize("n", [1, 2, 7, 21, 22, 30])
def test_exactly_as_many_frames_out_as_in(tiny_engine, n):
    out, state = upscale(tiny_engine, random_frames(n, H, W, seed=n))
    assert out.shape == (n, 3, H, W)
    assert torch.isfinite(out).all() and out.abs().max() <= 1
    assert state.emitted == n and state.calls == calls_to_cover(n)


def test_push_granularity_does_not_change_output(tiny_engine):
    frames = random_frames(29, H, W, seed=5)
    a, _ = upscale(tiny_engine, frames, push=1)
    b, _ = upscale(tiny_engine, frames, push=29)
    assert torch.equal(a, b)


def test_trailing_padding_does_not_change_earlier_frames(tiny_engine):
    """The engine is causal: frames appended at the end (here copies of the last frame, as
    the reference pads) leave every earlier output frame unchanged."""
    frames = random_frames(26, H, W, seed=6)
    short, _ = upscale(tiny_engine, frames)
    longer, _ = upscale(tiny_engine, torch.cat([frames, frames[-1:].expand(9, -1, -1, -1)]))
    torch.testing.assert_close(longer[:26], short, rtol=0, atol=1e-6)


def test_frames_are_emitted_as_soon_as_final(tiny_engine):
    state = tiny_engine.start(H, W)
    frames = random_frames(34, H, W, seed=7)
    assert tiny_engine.push(state, frames[:24]).shape[0] == 0  # call 0 needs 25 LQ frames
    assert tiny_engine.push(state, frames[24:25]).shape[0] == 21
    assert tiny_engine.push(state, frames[25:34]).shape[0] == 8  # call 1 needs 33
    assert tiny_engine.finish(state).shape[0] == 34 - 29


def test_state_stays_bounded_on_long_streams(tiny_engine):
    state = tiny_engine.start(H, W)
    frames = random_frames(8, H, W, seed=8)
    sizes = []
    for i in range(14):  # 112 frames: 12 DiT calls
        tiny_engine.push(state, frames)
        sizes.append((tuple(state.kv.k.shape) if state.kv is not None else None, len(state.lq)))
    assert state.calls >= 10
    steady = sizes[4:]
    assert len({ring for ring, _ in steady}) == 1, sizes  # the KV ring is allocated once, never grows
    assert max(n for _, n in steady) <= 12  # LQ frames kept
    assert len(state.slots.order) == 3 == state.attention.kv_slices


def test_same_seed_same_output_and_seed_matters(tiny_engine):
    frames = random_frames(9, H, W, seed=9)
    a, _ = upscale(tiny_engine, frames)
    b, _ = upscale(tiny_engine, frames)
    assert torch.equal(a, b)
    other = StreamingEngine(tiny_engine.models, EngineConfig(**{**tiny_engine.config.__dict__, "seed": 1}))
    c, _ = upscale(other, frames)
    assert not torch.equal(a, c)


def test_full_variant_streams_through_the_vae():
    eng = engine(variant="full")
    out, _ = upscale(eng, random_frames(23, H, W, seed=10))
    assert out.shape == (23, 3, H, W)
    tiny, _ = upscale(engine(), random_frames(23, H, W, seed=10))
    assert not torch.allclose(out, tiny)


def test_content_box_crops_and_colour_fixes_only_real_pixels(tiny_engine):
    frames = random_frames(5, H, W, seed=11)
    out, _ = upscale(tiny_engine, frames, content=(0, 0, 100, 200))
    assert out.shape == (5, 3, 100, 200)
    lq = frames[:, :, :100, :200]
    torch.testing.assert_close(out.mean(dim=(2, 3)), lq.mean(dim=(2, 3)), rtol=0, atol=2e-2)


def test_bad_frames_are_rejected_clearly(tiny_engine):
    state = tiny_engine.start(H, W)
    with pytest.raises(ValueError, match="expected LQ frames of shape"):
        tiny_engine.push(state, torch.zeros(2, 3, H, W + 8))
    with pytest.raises(ValueError, match="no frames"):
        tiny_engine.finish(state)
    with pytest.raises(ValueError, match="multiple of 128"):
        tiny_engine.start(100, 256)


def test_schedule_matches_reference_indexing():
    assert plan_call(0).lq_clips[0] == (0, 1) and plan_call(0).lq_clips[-1] == (21, 25)
    p = plan_call(3)
    assert (p.latent_start, p.latent_count) == (4 + 2 * 3, 2)
    assert p.lq_clips == ((8 * 3 + 17, 8 * 3 + 21), (8 * 3 + 21, 8 * 3 + 25))
    assert p.decode == (8 * 3 + 13, 8 * 3 + 21)
    assert reference_frame_count(37) == 41 and reference_frame_count(100) == 97
    assert model_frame_size(540, 960) == (640, 1024)


def test_adain_matches_reference_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 2, 32, 32, generator=g) * 0.5
    ref = torch.rand(1, 3, 2, 32, 32, generator=g) * 1.6 - 0.8
    out = adain(x, ref)
    torch.testing.assert_close(out.mean(dim=(3, 4)), ref.mean(dim=(3, 4)), rtol=0, atol=1e-5)
    std = lambda v: (v.var(dim=(3, 4), unbiased=False) + 1e-5).sqrt()  # noqa: E731
    torch.testing.assert_close(std(out), std(ref), rtol=1e-3, atol=1e-4)


def test_wavelet_keeps_output_detail_and_lq_low_band():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 1, 64, 64, generator=g) * 2 - 1
    ref = torch.rand(1, 3, 1, 64, 64, generator=g) * 0.5
    high, low = wavelet_bands(x[:, :, 0])
    torch.testing.assert_close(high + low, x[:, :, 0])  # the decomposition is exact
    out = wavelet(x * 0.3, ref)
    _, out_low = wavelet_bands(out[:, :, 0])
    _, ref_low = wavelet_bands(ref[:, :, 0])
    assert (out_low - ref_low).abs().mean() < 0.02



class ReplayByRunning:
    """Stands in for a CUDA graph on the CPU: a replay runs the recorded function on the
    captured buffers and writes the captured output buffer, as a real replay does."""

    def __init__(self, fn, buffers, output):
        self.fn, self.buffers, self.output, self.replays = fn, buffers, output, 0

    def replay(self):
        self.output.copy_(self.fn(*self.buffers))
        self.replays += 1


def test_call_graphs_warm_each_shape_then_capture_each_slot_plan_once(monkeypatch):
    from flashvsr.engine.graphs import CallGraphs, CapturedCall

    def fake_capture(self, transformer, inputs):
        buffers = tuple(t.clone() for t in inputs)
        output = transformer(*buffers)
        return CapturedCall(ReplayByRunning(transformer, buffers, output), buffers, output)

    monkeypatch.setattr(CallGraphs, "_capture", fake_capture)
    eager_calls = []

    def transformer(x, cos, sin):
        eager_calls.append(x.shape)
        return x * cos + sin

    graphs = CallGraphs()
    gen = torch.Generator().manual_seed(0)
    inputs = lambda: tuple(torch.randn(4, 3, generator=gen) for _ in range(3))  # noqa: E731
    for call, plan in enumerate(["a", "a", "b", "c", "a", "b", "c"]):
        x, cos, sin = inputs()
        out = graphs.run(("shape", plan), transformer, (x, cos, sin))
        torch.testing.assert_close(out, x * cos + sin)  # every call computes its own inputs
    assert set(graphs.captured) == {("shape", p) for p in "abc"}
    # call 0 eager (warm-up), the first call of each plan captured (recording runs it once here)
    assert len(eager_calls) == 1 + 3 + sum(e.graph.replays for e in graphs.captured.values())
    assert [graphs.captured[("shape", p)].graph.replays for p in "abc"] == [2, 2, 2]


def test_graphs_are_not_used_on_the_cpu_and_move_state_drops_them(tiny_engine):
    from flashvsr.engine.state import move_state

    engine = StreamingEngine(tiny_engine.models, EngineConfig(device="cpu", dtype="float32", cuda_graphs=True))
    state = engine.start(128, 128)
    out = torch.cat([engine.push(state, random_frames(29, 128, 128)), engine.finish(state)])
    assert out.shape[0] == 29 and not state.graphs.captured and not state.graphs.warm_shapes
    state.graphs.captured["stale"] = object()
    move_state(state, "cpu")
    assert not state.graphs.captured


class HeldBack(InlineDecoding):
    """The side stream's hand-over (each push keeps its last call's frames) without a GPU."""

    calls_held = 1

    def __init__(self):
        self.settled = 0

    def settle(self) -> None:
        self.settled += 1


def test_overlapped_decoding_hands_the_same_frames_out_one_call_later(tiny_engine):
    frames = random_frames(34, H, W, seed=11)
    inline, _ = upscale(tiny_engine, frames)
    held = engine()
    held.decoding = HeldBack()
    state = held.start(H, W)
    counts = [held.push(state, frames[:25]).shape[0], held.push(state, frames[25:34]).shape[0]]
    assert counts == [0, 21]  # call 0's 21 frames wait for call 1 to be under way
    assert len(state.in_flight) == 1
    rest = held.finish(state)
    assert rest.shape[0] == 34 - 21 and not state.in_flight and state.emitted == 34
    again, _ = upscale(held, frames)
    assert torch.equal(again, inline)


def test_overlap_is_inline_on_the_cpu_and_a_side_stream_on_cuda():
    assert isinstance(decoding_for(torch.device("cpu"), overlap=True), InlineDecoding)
    cpu = StreamingEngine(tiny_models(), EngineConfig(device="cpu", dtype="float32", overlap_decode=True))
    assert cpu.decoding.calls_held == 0
    assert first_stream_for(torch.device("cpu"), overlap=True) is None
    with running_on(None):  # the CPU's one stream: nothing to switch
        pass
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        assert isinstance(decoding_for(cuda, overlap=True), SideStreamDecoding)
        assert first_stream_for(cuda, overlap=False) is None
        first = first_stream_for(cuda, overlap=True)
        assert first.priority < 0  # above the default streams' 0
        with running_on(first):
            assert torch.cuda.current_stream() == first
        assert torch.cuda.current_stream() != first


def test_an_upscaler_with_overlap_runs_the_engine_on_its_own_stream_and_gives_the_same_frames(tmp_path):
    from flashvsr.pipeline import Upscaler
    from flashvsr.weights.loading import save_model

    folder = save_model(tiny_models(decoders=("tiny",)), tmp_path / "m")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lr = [(random_frames(1, 32, 64, seed=i)[0].permute(1, 2, 0).add(1).mul(127.5)).byte().numpy() for i in range(11)]
    plain = Upscaler.load(folder, device=device, dtype="float32")
    overlapped = Upscaler.load(folder, device=device, dtype="float32", overlap_decode=True)
    assert (overlapped.first_stream is None) == (device == "cpu")
    a = list(plain.stream(lr, batch=3))
    b = list(overlapped.stream(lr, batch=3))
    assert len(a) == len(b) == 11
    # the CPU has one stream: the same frames; on CUDA, cuDNN may pick other float32 algorithms per engine (a
    # stream race would show as garbage, far beyond one level); bf16 exactness: benchmarks/option_exact.py
    tolerance = 0 if device == "cpu" else 1
    assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b)) <= tolerance


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the host waits for a GPU only where there is one")
@pytest.mark.parametrize("overlap", [False, True])
def test_steady_pushes_never_make_the_host_wait_for_the_gpu(overlap):
    """A copy from pageable host memory drains the GPU's queue (flashvsr.transfer): a steady push,
    from host frames to queued output, must make no synchronizing CUDA call at all."""
    from flashvsr.pipeline import Upscaler, engine_config, plan_geometry

    up = Upscaler(tiny_models(decoders=("tiny",)), engine_config("tiny", "cuda", "float32", overlap_decode=overlap))
    lr = [torch.from_numpy(np.random.default_rng(i).integers(0, 256, (32, 64, 3), dtype=np.uint8)) for i in range(85)]
    geo = plan_geometry(32, 64)
    with torch.no_grad():
        stream = up.open_stream(geo)
        up._push(stream, lr[:61], geo)  # calls 0–6: the caches fill and every kernel shape compiles
        torch.cuda.set_sync_debug_mode("error")
        try:
            for i in range(61, 85, 8):
                up._push(stream, lr[i : i + 8], geo)
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_output_frames_are_handed_out_in_order_two_dit_calls_later():
    from flashvsr.pipeline import HandOver, HostFrames

    pushes = [HostFrames(torch.full((2, 4, 4, 3), i, dtype=torch.uint8)) for i in range(4)]
    hand_over = HandOver(calls_ahead=2)
    assert hand_over.add(pushes[0]) == [] and hand_over.add(None) == [] and hand_over.add(pushes[1]) == []
    assert [int(f[0, 0, 0]) for f in hand_over.add(pushes[2])] == [0, 0]  # once two later calls are queued
    assert [int(f[0, 0, 0]) for f in hand_over.add(pushes[3])] == [1, 1]
    assert [int(f[0, 0, 0]) for f in hand_over.rest()] == [2, 2, 3, 3]


def test_a_kernel_turned_off_on_this_gpu_is_said_when_the_engine_starts(monkeypatch):
    """The start-up check of this project's GPU kernels (flashvsr/kernels) reaches the user as a warning."""
    import flashvsr.engine.stream as stream_module

    line = "Triton kernel rms_norm_rope turned off (AssertionError: 0.02 apart); torch's ops serve"
    monkeypatch.setattr(stream_module, "check_kernels", lambda device, compiled: (line,))
    with pytest.warns(UserWarning, match="rms_norm_rope turned off"):
        StreamingEngine(tiny_models(), EngineConfig(dtype="float32", device="cpu"))


def test_compiled_frame_conversions_give_the_same_values():
    """``--compile``'s fused prepare (resize tail, pad, scale, cast) and uint8 conversion: element-wise ops
    in the same order, the resizes left to torch's kernels, so the same values (here with the CPU's Inductor)."""
    from flashvsr.pipeline import FrameConversions, plan_geometry, prepare_frames, to_uint8

    assert FrameConversions.build(torch.device("cpu"), compile=True) == FrameConversions()  # eager off CUDA
    geo = plan_geometry(30, 50, width=200, height=120)  # padded to 128×256: reflect padding in the fused part
    lr = torch.randint(0, 256, (3, 30, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fused_prepare, fused_u8 = torch.compile(prepare_frames, dynamic=False), torch.compile(to_uint8, dynamic=False)
    lq = prepare_frames(lr, geo, torch.bfloat16)
    assert lq.shape == (3, 3, 128, 256) and torch.equal(fused_prepare(lr, geo, torch.bfloat16), lq)
    out = torch.randn(3, 3, 120, 200, generator=torch.Generator().manual_seed(1)) * 0.8
    assert torch.equal(fused_u8(out), to_uint8(out))


@pytest.mark.parametrize("method", ["adain", "wavelet"])
def test_compiled_colour_fix_is_within_one_bf16_step(method):
    """``--compile`` compiles the colour fix: the element-wise ops keep their order; only the reductions'
    summation order may differ, which moves an output by at most one bf16 step."""
    from flashvsr.colorfix import color_fix

    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(1, 3, 4, 48, 80, generator=g) * 1.6 - 0.8).bfloat16()
    lq = (torch.rand(1, 3, 4, 48, 80, generator=g) * 1.2 - 0.6).bfloat16()
    eager = color_fix(frames, lq, method)
    fused = torch.compile(color_fix, dynamic=False)(frames, lq, method)
    step = eager.float().abs().clamp(min=2**-8) * 2**-7  # one bf16 step at each value (a subnormal floor)
    assert fused.dtype == eager.dtype and ((fused.float() - eager.float()).abs() <= step).all()


def test_kv_copies_go_aside_with_overlap_unless_told():
    assert not EngineConfig().copies_kv_aside
    assert EngineConfig(overlap_decode=True).copies_kv_aside
    assert not EngineConfig(overlap_decode=True, kv_copy_stream=False).copies_kv_aside
    assert EngineConfig(kv_copy_stream=True).copies_kv_aside


def test_kv_slots_roam_with_overlap_unless_told():
    assert not EngineConfig().roams_kv_slots
    assert EngineConfig(overlap_decode=True).roams_kv_slots
    assert not EngineConfig(overlap_decode=True, roaming_kv_slots=False).roams_kv_slots
    assert EngineConfig(roaming_kv_slots=True).roams_kv_slots


@pytest.mark.skipif(not torch.cuda.is_available(), reason="compiled conversions run on CUDA only")
def test_on_a_gpu_compiled_conversions_and_colour_fix_match_eager():
    from flashvsr.colorfix import color_fix
    from flashvsr.pipeline import FrameConversions, plan_geometry, prepare_frames, to_uint8

    fused = FrameConversions.build(torch.device("cuda"), compile=True)
    assert fused != FrameConversions()
    geo = plan_geometry(270, 480, width=1920, height=1080)
    lr = torch.randint(0, 256, (8, 270, 480, 3), dtype=torch.uint8, device="cuda")
    lq = fused.prepare(lr, geo, torch.bfloat16)
    assert torch.equal(lq, prepare_frames(lr, geo, torch.bfloat16))
    out = (lq[:, :, :1080] * 0.9).clone()
    assert torch.equal(fused.to_uint8(out), to_uint8(out))
    frames = (out * 0.5 + 0.1).transpose(0, 1)[None]
    eager = color_fix(frames, lq[None, :, :, :1080].transpose(1, 2), "adain")
    compiled = torch.compile(color_fix)(frames, lq[None, :, :, :1080].transpose(1, 2), "adain")
    step = eager.float().abs().clamp(min=2**-8) * 2**-7
    assert ((compiled.float() - eager.float()).abs() <= step).all()
