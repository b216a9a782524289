"""Model pieces: streaming equals whole-sequence processing, RoPE is relative and unbounded."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from flashvsr.models.dit import apply_rope, dense_attention, rope_cos_sin, rope_split, sinusoidal_embedding
from flashvsr.models.lq_proj import LQProjCache, time_conv_as_2d
from flashvsr.models.tc_decoder import TCDecoder, lq_condition

from .conftest import random_frames, tiny_models



@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():  # inference checks only; scoped so later modules still train
        yield


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_rotates_consecutive_pairs_exactly(dtype):
    """(x₀, x₁) → (x₀c − x₁s, x₁c + x₀s) per pair, in float32, cast back: the same bits as the
    pairwise formula (the kernel's layout changed, not its arithmetic)."""
    x = torch.randn(2, 24, 3, 12, generator=torch.Generator().manual_seed(0)).to(dtype)
    cos, sin = rope_cos_sin(torch.arange(2), 3, 4, 12)
    x0, x1 = x.float()[..., 0::2], x.float()[..., 1::2]
    c, s = cos[None, :, None], sin[None, :, None]
    expected = torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], dim=-1).flatten(-2).to(dtype)
    assert torch.equal(apply_rope(x, cos, sin), expected)


def test_rope_split_and_angles_follow_spec():
    assert rope_split(128) == (44, 42, 42)
    cos, sin = rope_cos_sin(torch.tensor([5000]), 2, 3, 128)
    # token (t=5000, y=1, x=2): pair i of the time part rotates by 5000·10000^(−2i/44)
    token = 1 * 3 + 2
    for i in (0, 5, 21):
        angle = 5000 * 10000 ** (-2 * i / 44)
        assert math.isclose(cos[token, i].item(), math.cos(angle), abs_tol=1e-6)
        assert math.isclose(sin[token, i].item(), math.sin(angle), abs_tol=1e-6)
    angle_y = 1 * 10000 ** (-2 * 3 / 42)
    assert math.isclose(cos[token, 22 + 3].item(), math.cos(angle_y), abs_tol=1e-6)
    angle_x = 2 * 10000 ** (-2 * 4 / 42)
    assert math.isclose(sin[token, 22 + 21 + 4].item(), math.sin(angle_x), abs_tol=1e-6)


def test_time_embedding_is_cosines_then_sines():
    emb = sinusoidal_embedding(8, torch.tensor([1000.0]))
    freqs = [10000 ** (-i / 4) for i in range(4)]
    expected = [math.cos(1000 * f) for f in freqs] + [math.sin(1000 * f) for f in freqs]
    assert torch.allclose(emb[0], torch.tensor(expected, dtype=torch.float64))


def test_dit_is_invariant_to_shifting_time_positions():
    """RoPE is relative: positions far past the reference's 1024-entry table give the same
    output, so long streams need no re-basing and never overflow."""
    models = tiny_models()
    dit = models.dit
    cond = dit.condition(models.context)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 4, 32, 32, generator=g)
    a = dit(latents, cond, dense_attention, time_offset=0)
    b = dit(latents, cond, dense_attention, time_offset=50_000)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_lq_projection_whole_sequence_equals_streaming():
    models = tiny_models()
    proj = models.lq_proj
    video = random_frames(1 + 4 * 5, 128, 128, seed=1)[None].transpose(1, 2)  # (1, 3, 21, H, W)
    whole = proj(video)
    cache, tokens = LQProjCache(), []
    first = video[:, :, :1].expand(-1, -1, 4, -1, -1)
    for clip in [first] + list(video[:, :, 1:].split(4, dim=2)):
        out, cache = proj.step(cache, clip)
        if out is not None:
            tokens.append(out)
    torch.testing.assert_close(whole, torch.cat(tokens, dim=1), rtol=1e-5, atol=1e-5)


def test_lq_projection_rules_differ_only_after_priming():
    v1 = tiny_models("v1").lq_proj
    v11 = tiny_models("v1.1").lq_proj
    clips = random_frames(12, 128, 128, seed=2)[None].transpose(1, 2).split(4, dim=2)
    c1, c11 = LQProjCache(), LQProjCache()
    outs1, outs11 = [], []
    for clip in clips:
        o1, c1 = v1.step(c1, clip)
        o11, c11 = v11.step(c11, clip)
        outs1.append(o1)
        outs11.append(o11)
    assert outs1[0] is None and outs11[0] is None  # priming yields nothing
    assert not torch.allclose(outs1[1], outs11[1])  # v1 ignores the previous clip, v1.1 uses it


@pytest.mark.parametrize("lq_skip", [False, True])
def test_tc_decoder_chunking_does_not_change_frames(lq_skip):
    dec = TCDecoder(replace(tiny_models().tc_decoder.cfg, lq_skip=lq_skip))
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 5, 16, 16, generator=g)
    lq = random_frames(20, 128, 128, seed=3)[None].transpose(1, 2)
    whole, _ = dec.decode(dec.start(), latents, lq)
    assert whole.shape == (1, 3, 17, 128, 128)  # first latent gives 1 frame, others 4
    mem, parts = dec.start(), []
    for i in range(5):
        out, mem = dec.decode(mem, latents[:, :, i : i + 1], lq[:, :, 4 * i : 4 * i + 4])
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-5, atol=1e-5)
    for chunk in (1, 3):  # frame chunks after each temporal growth: same frames, less memory
        chunked, _ = dec.decode(dec.start(), latents, lq, frame_chunk=chunk)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [4, 1])
def test_tc_decoder_memory_keeps_one_frame_per_block(chunk):
    """Between calls each memory block keeps its last input frame and nothing more (a view of it
    would keep the whole piece of frames it was cut from; a one-frame chunk is kept as it is)."""
    dec = TCDecoder(replace(tiny_models().tc_decoder.cfg, head_memory=True))
    latents = torch.randn(1, 16, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    lq = random_frames(12, 128, 128, seed=5)[None].transpose(1, 2)
    _, memory = dec.decode(dec.start(), latents, lq, frame_chunk=chunk)
    assert memory.past
    for key, frame in memory.past.items():
        assert frame.shape[0] == 1, key
        assert frame.untyped_storage().nbytes() == frame.numel() * frame.element_size(), key


@pytest.mark.parametrize("steps", [4, 6, 9])
def test_time_strided_conv_as_one_2d_conv_equals_the_3d_conv(steps):
    conv = torch.nn.Conv3d(12, 8, (4, 3, 3), stride=(2, 1, 1)).double()
    x = torch.randn(2, 12, steps, 10, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(steps))
    torch.testing.assert_close(time_conv_as_2d(conv, x), conv(x), rtol=1e-12, atol=1e-12)


def test_lq_projection_weights_stored_for_2d_convs_change_no_value():
    """The engine re-lays the conv weights so that their 2-D form is channels-last (no per-call
    conversion by cuDNN): the parameters keep their values and the tokens do not change."""
    proj = tiny_models().lq_proj
    clip = random_frames(4, 64, 64, seed=2)[None].transpose(1, 2)
    before = [proj.step(proj.step(LQProjCache(), clip)[1], clip)[0]]
    state = {k: v.clone() for k, v in proj.state_dict().items()}
    proj.store_weights_for_2d()
    after = proj.step(proj.step(LQProjCache(), clip)[1], clip)[0]
    assert all(torch.equal(state[k], v) for k, v in proj.state_dict().items())
    for conv in (proj.conv1, proj.conv2):
        assert conv.weight.flatten(1, 2).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(after, before[0], rtol=1e-6, atol=1e-6)


def test_dit_gelu_epilogue_is_the_plain_ffn_off_cuda():
    """``gelu_epilogue`` asks for cuBLASLt's GELU (tanh) epilogue; off CUDA the plain FFN runs
    (the CPU's fused op computes erf's GELU, which the model does not use)."""
    block = tiny_models().dit.blocks[0]
    x = torch.randn(1, 10, block.ffn[0].in_features, generator=torch.Generator().manual_seed(1))
    assert torch.equal(block.feed_forward(x, gelu_epilogue=True), block.ffn(x))


@pytest.mark.parametrize("extras", [{}, {"lq_skip": True, "head_memory": True}])
def test_tc_decoder_in_channels_last_layout_gives_the_same_frames(extras):
    """``channels_last`` keeps every convolution's input in that layout (no conversion around
    each one on a GPU) and changes no value, streamed and in frame chunks."""
    dec = TCDecoder(replace(tiny_models().tc_decoder.cfg, **extras)).to(memory_format=torch.channels_last)
    latents = torch.randn(1, 16, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    lq = random_frames(12, 128, 128, seed=6)[None].transpose(1, 2)
    layouts = []
    for conv in (m for m in dec.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_pre_hook(
            lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
    plain, _ = dec.decode(dec.start(), latents, lq)
    layouts.clear()
    mem, parts = dec.start(), []
    for i, j in ((0, 1), (1, 3)):
        out, mem = dec.decode(mem, latents[:, :, i:j], lq[:, :, 4 * i : 4 * j], frame_chunk=1, channels_last=True)
        parts.append(out)
    assert layouts and all(layouts)
    torch.testing.assert_close(torch.cat(parts, dim=2), plain, rtol=1e-5, atol=1e-5)


def test_tc_decoder_fused_epilogues_compute_the_same_frames():
    """``fused`` moves the memory blocks' bias, ReLU and residual add into cuDNN's convolution
    epilogues on CUDA (the same sums, rounded once); elsewhere it is the plain path, exactly."""
    dec = TCDecoder(replace(tiny_models().tc_decoder.cfg, lq_skip=True, head_memory=True))
    latents = torch.randn(1, 16, 2, 16, 16, generator=torch.Generator().manual_seed(4))
    lq = random_frames(8, 128, 128, seed=7)[None].transpose(1, 2)
    plain, _ = dec.decode(dec.start(), latents, lq)
    fused, _ = dec.decode(dec.start(), latents, lq, fused=True)
    assert torch.equal(fused, plain)
    if torch.cuda.is_available():  # the fused kernels themselves: float32 (TF32 convolutions) on the GPU, against the CPU
        gpu = dec.cuda()
        on_gpu, _ = gpu.decode(gpu.start(), latents.cuda(), lq.cuda(), fused=True)
        torch.testing.assert_close(on_gpu.cpu(), plain, rtol=1e-2, atol=1e-2)


def test_residual_tc_decoder_starts_as_the_identity_on_lq_frames():
    cfg = replace(tiny_models().tc_decoder.cfg, residual=True)
    dec = TCDecoder(cfg)
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    lq = random_frames(12, 64, 64, seed=4)[None].transpose(1, 2)
    before, _ = dec.decode(dec.start(), latents, lq)
    assert (before - lq[:, :, 3:]).abs().max() > 1e-3  # random init: a residual is added
    dec.zero_last_layer()
    mem, parts = dec.start(), []
    for i in range(3):  # streaming, one latent frame per call
        out, mem = dec.decode(mem, latents[:, :, i : i + 1], lq[:, :, 4 * i : 4 * i + 4])
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=2), lq[:, :, 3:], rtol=0, atol=0)


def test_wider_head_starts_from_a_narrower_decoder_and_learns():
    """``head_channels``: the full-resolution convs widened from a trained decoder compute the
    same frames at first, and the new channels get gradients from the first step."""
    cfg = replace(tiny_models().tc_decoder.cfg, residual=True, lq_skip=True)
    narrow, wide = TCDecoder(cfg), TCDecoder(replace(cfg, head_channels=2 * cfg.channels[2]))
    plain = TCDecoder(replace(cfg, lq_skip=False))
    wide.load_state_dict(wide.grow_state(narrow.state_dict()))
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    lq = random_frames(12, 64, 64, seed=5)[None].transpose(1, 2)
    torch.testing.assert_close(wide(latents, lq), narrow(latents, lq), rtol=0, atol=1e-6)
    wide.load_state_dict(wide.grow_state(plain.state_dict()))  # no skip and narrower: both at once
    torch.testing.assert_close(wide(latents, lq), plain(latents, lq), rtol=0, atol=1e-6)
    with torch.enable_grad():
        wide(latents, lq).square().mean().backward()
    last = wide.decoder[wide.head_convs()[2]].weight
    assert last.grad[:, cfg.channels[2] :].abs().sum() > 0  # the new channels would move


def test_head_memory_reads_the_previous_frame_in_streams_and_pieces():
    """``head_memory``: the first full-resolution conv also reads its predecessor's input —
    across calls and frame chunks alike — and a decoder without it starts one with it."""
    cfg = replace(tiny_models().tc_decoder.cfg, residual=True, lq_skip=True)
    plain, mem = TCDecoder(cfg), TCDecoder(replace(cfg, head_memory=True))
    mem.load_state_dict(mem.grow_state(plain.state_dict()))
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    lq = random_frames(12, 64, 64, seed=6)[None].transpose(1, 2)
    torch.testing.assert_close(mem(latents, lq), plain(latents, lq), rtol=0, atol=1e-6)
    torch.nn.init.normal_(mem.decoder[mem.skip_at].weight, std=0.05)  # make the memory matter
    whole = mem(latents, lq)
    seen = []
    c2 = cfg.channels[2]
    mem.decoder[mem.skip_at].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    for chunk in (0, 1, 3):
        seen.clear()
        memory, parts = mem.start(), []
        for i in range(3):  # streaming, one latent frame per call
            out, memory = mem.decode(memory, latents[:, :, i : i + 1], lq[:, :, 4 * i : 4 * i + 4], frame_chunk=chunk)
            parts.append(out)
        torch.testing.assert_close(torch.cat(parts, dim=2), whole, rtol=1e-5, atol=1e-5)
        inputs = torch.cat(seen)
        features, previous = inputs[:, :c2], inputs[:, c2 + 3 :]
        assert previous[0].abs().max() == 0  # the stream's first frame has no predecessor
        torch.testing.assert_close(previous[1:], features[:-1], rtol=0, atol=0)


def test_lq_skip_decoder_starts_from_one_without_it():
    cfg = replace(tiny_models().tc_decoder.cfg, residual=True)
    plain, skip = TCDecoder(cfg), TCDecoder(replace(cfg, lq_skip=True))
    skip.load_state_dict(skip.grow_state(plain.state_dict()))
    latents = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    lq = random_frames(12, 64, 64, seed=5)[None].transpose(1, 2)
    torch.testing.assert_close(skip(latents, lq), plain(latents, lq), rtol=0, atol=0)
    assert skip.decoder[skip.skip_at].in_channels == cfg.channels[2] + 3  # the full-resolution conv reads RGB too
    seen = []
    skip.decoder[skip.skip_at].register_forward_pre_hook(lambda _, args: seen.append(args[0][:, -3:]))
    for chunk in (0, 1, 3):  # each frame reads its own LQ frame, in whole calls and in pieces
        seen.clear()
        skip.decode(skip.start(), latents, lq, frame_chunk=chunk)
        torch.testing.assert_close(torch.cat(seen), lq[0].transpose(0, 1), rtol=0, atol=0)


def test_tc_condition_channel_order():
    lq = torch.randn(1, 3, 4, 16, 16)
    cond = lq_condition(lq, tiny_models().tc_decoder.cfg)
    c, t, dy, dx = 2, 3, 5, 6
    assert cond[0, 0, c * 256 + t * 64 + dy * 8 + dx, 1, 0] == lq[0, c, t, 8 + dy, dx]


def test_vae_decode_streaming_equals_whole_and_roundtrip_shapes():
    vae = tiny_models().vae
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 4, 8, 8, generator=g)
    whole = vae.decode(z)
    assert whole.shape == (1, 3, 13, 64, 64)
    cache, parts = vae.start_decode(), []
    for i in range(4):
        out, cache = vae.decode_step(cache, z[:, :, i : i + 1])
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=2), whole)
    assert vae.encode(whole).shape == (1, 16, 4, 8, 8)
