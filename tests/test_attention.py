"""LCSA: mask construction rules (SPEC §4) and the exactness of every CPU kernel."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from flashvsr.attention import masks
from flashvsr.attention.backends import (
    dense_block_sparse,
    gather_block_sparse,
    merge_partial_attention,
    resolve_backend,
)
from flashvsr.attention.lcsa import AttentionPlan, SlotTable
from flashvsr.kernels.block_choice import selected_first


def test_local_mask_is_centred_and_truncated():
    m = masks.local_window_mask(5, 6, local_range=3).view(5, 6, 5, 6)
    # centre window (2, 3) sees rows 1..3 and columns 2..4
    seen = m[2, 3].nonzero().tolist()
    assert seen == [[r, c] for r in (1, 2, 3) for c in (2, 3, 4)]
    # corner window (0, 0) is truncated at the border: rows 0..1, columns 0..1
    assert m[0, 0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]


def test_even_local_range_reaches_one_further_back():
    m = masks.local_window_mask(1, 8, local_range=4).view(8, 8)
    assert m[4].nonzero().flatten().tolist() == [2, 3, 4, 5]  # c − 2 … c + 1


def test_k_outside_the_row_is_an_error():
    with pytest.raises(ValueError, match="outside 0…9"):
        masks.kth_largest(torch.zeros(2, 10), 10)


def test_the_threshold_keeps_exactly_k_values_above_it_without_ties():
    x = torch.randn(3, 4, 500)
    for k in (0, 1, 250, 499):
        t = masks.kth_largest(x, k)
        assert t.shape == (3, 4, 1)
        assert ((x > t).sum(-1) == k).all()


def test_the_threshold_is_the_value_of_a_sort_for_short_and_long_rows_ties_included():
    """kthvalue for short rows, topk for long ones (faster on the GPU): the same value either way."""
    g = torch.Generator().manual_seed(4)
    for length in (5000, masks.TOPK_FROM_LENGTH + 77):
        x = torch.randint(0, 50, (3, length), generator=g).float() / 7  # many ties
        x[0, :100] = float("-inf")  # a masked-out stretch, as the local mask leaves
        ranked = x.sort(dim=-1, descending=True).values
        for k in (0, 1, 1234, length - 1):
            assert torch.equal(masks.kth_largest(x, k), ranked[:, k : k + 1]), (length, k)


def test_windows_round_trip_and_grouping():
    f, h, w, heads, d = 4, 16, 24, 3, 5
    x = torch.randn(2, f * h * w, heads, d)
    win = masks.to_windows(x, f, h, w)
    assert win.shape == x.shape
    assert torch.equal(masks.from_windows(win, f, h, w), x)
    # window 1 of slice 0 holds tokens t∈{0,1}, y∈0..7, x∈8..15, in (t, y, x) order
    grid = x.view(2, f, h, w, heads, d)
    expect = grid[:, 0:2, 0:8, 8:16].reshape(2, 128, heads, d)
    assert torch.equal(win[:, 128:256], expect)
    pooled = masks.pooled_windows(win)
    torch.testing.assert_close(pooled[:, :, 1], expect.mean(dim=1))


def test_joint_topk_keeps_strictly_greater_than_threshold():
    torch.manual_seed(0)
    s, heads = 6, 4
    local = masks.local_window_mask(2, 3, local_range=3)
    scores = torch.randn(1, heads, 3 * s, 4 * s)
    topk = masks.topk_count(s, 0.5)  # int(36 * 0.5) - 1 = 17
    sel = masks.select_blocks(scores, local, s, topk)
    per_slice = sel.view(1, heads, 3, -1).sum(-1)
    assert (per_slice == topk).all()  # no ties with random scores
    allowed = local.repeat(3, 4)
    assert not (sel & ~allowed).any()
    # the kept entries are the largest probabilities of their slice
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1).view(1, heads, 3, -1)
    kept_min = probs.masked_fill(~sel.view_as(probs), float("inf")).amin(-1)
    dropped_max = probs.masked_fill(sel.view_as(probs), float("-inf")).amax(-1)
    assert (kept_min > dropped_max).all()


def test_topk_larger_than_slice_keeps_all_but_the_smallest():
    s = 2
    local = torch.ones(s, s, dtype=torch.bool)
    scores = torch.randn(1, 1, s, s)
    sel = masks.select_blocks(scores, local, s, topk=1000)
    assert sel.sum() == s * s - 1  # k' = n − 1: everything above the minimum


def random_qkv(nq=5, nk=7, heads=2, d=16, seed=0):
    """Window-ordered (B, L, heads, d) tokens and a block mask with an empty row."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(1, nq * 128, heads, d, generator=g)
    k = torch.randn(1, nk * 128, heads, d, generator=g)
    v = torch.randn(1, nk * 128, heads, d, generator=g)
    mask = torch.rand(1, heads, nq, nk, generator=g) < 0.4
    mask[0, 0, 1] = False  # a query window with no key window
    mask[0, 1, 2] = True
    return q, k, v, mask


@pytest.mark.parametrize("density", [0.0, 0.3, 0.5, 1.0])
def test_selected_first_orders_as_a_stable_sort(density):
    mask = torch.rand(2, 3, 5, 37, generator=torch.Generator().manual_seed(7)) < density
    counts, order = selected_first(mask)
    assert counts.dtype == order.dtype == torch.int32
    assert torch.equal(counts, mask.sum(dim=-1, dtype=torch.int32))
    assert torch.equal(order, mask.to(torch.int8).argsort(dim=-1, descending=True, stable=True).to(torch.int32))


def test_dense_kernel_is_exact_masked_softmax():
    q, k, v, mask = random_qkv()
    out = dense_block_sparse(q, [(k, v, mask)])
    h, i = 1, 3  # check one query window by hand
    keys = mask[0, h, i].nonzero().flatten()
    tokens = torch.cat([torch.arange(j * 128, (j + 1) * 128) for j in keys.tolist()])
    qq = q[0, i * 128 : (i + 1) * 128, h]
    ref = torch.softmax(qq @ k[0, tokens, h].T / 4.0, dim=-1) @ v[0, tokens, h]
    torch.testing.assert_close(out[0, i * 128 : (i + 1) * 128, h], ref, rtol=1e-5, atol=1e-5)
    assert torch.all(out[0, 128:256, 0] == 0), "a window that selects nothing outputs zeros"


def test_gather_kernel_equals_dense(monkeypatch):
    q, k, v, mask = random_qkv(nq=9, nk=11, seed=3)
    ref = dense_block_sparse(q, [(k, v, mask)])
    torch.testing.assert_close(gather_block_sparse(q, [(k, v, mask)]), ref, rtol=1e-5, atol=1e-5)
    # chunked over query windows gives the same result
    import flashvsr.attention.backends as backends

    monkeypatch.setattr(backends, "GATHER_CHUNK_BYTES", 1)
    torch.testing.assert_close(gather_block_sparse(q, [(k, v, mask)]), ref, rtol=1e-5, atol=1e-5)
    empty = torch.zeros_like(mask)
    assert torch.all(gather_block_sparse(q, [(k, v, empty)]) == 0)


def test_parts_equal_one_concatenated_key_set():
    q, k, v, mask = random_qkv(nq=6, nk=10, seed=4)
    whole = dense_block_sparse(q, [(k, v, mask)])
    parts = [(k[:, : 4 * 128], v[:, : 4 * 128], mask[..., :4]), (k[:, 4 * 128 :], v[:, 4 * 128 :], mask[..., 4:])]
    torch.testing.assert_close(gather_block_sparse(q, parts), whole, rtol=1e-5, atol=1e-5)


def _part_with_lse(q, k, v, mask):
    """(output, log-sum-exp) of one part, as FlexAttention returns them, in (B, H, L, d)."""
    b, lq, h, d = q.shape
    tm = mask[:, :, :, None, :, None].expand(b, h, lq // 128, 128, k.shape[1] // 128, 128).reshape(b, h, lq, -1)
    scores = (q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2) / d**0.5).masked_fill(~tm, float("-inf"))
    return scores.softmax(-1).nan_to_num(0.0) @ v.transpose(1, 2), scores.logsumexp(-1)


def test_log_sum_exp_merge_is_exact():
    q, k, v, mask = random_qkv(nq=6, nk=10, seed=5)
    mask[0, 0, 2, :] = False  # a row empty in both parts
    mask[0, 1, 3, 4:] = False  # a row empty in the second part only
    whole = dense_block_sparse(q, [(k, v, mask)]).transpose(1, 2)
    a = _part_with_lse(q, k[:, :512], v[:, :512], mask[..., :4])
    b = _part_with_lse(q, k[:, 512:], v[:, 512:], mask[..., 4:])
    merged = merge_partial_attention([a[0], b[0]], [a[1], b[1]])
    torch.testing.assert_close(merged, whole, rtol=1e-5, atol=1e-5)
    assert torch.all(merged[0, 0, 2 * 128 : 3 * 128] == 0)


def test_backend_resolution_never_silently_falls_back():
    assert resolve_backend("auto", "cpu") is gather_block_sparse
    with pytest.raises(ValueError, match="CUDA"):
        resolve_backend("flex", "cpu")
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("magic", "cpu")
    with pytest.raises(ValueError, match="CUDA"):
        resolve_backend("flash4", "cpu")


def test_flash4_is_chosen_only_where_the_model_computes_in_16_bits(monkeypatch):
    """FlashAttention-4 takes bf16 or fp16: ``auto`` passes it over for float32 (a GPU test at float32
    reached its assertion), and asking for it at float32 says why before any frame is read."""
    from flashvsr.attention import backends

    monkeypatch.setattr(backends, "flash4_usable", lambda device: True)
    monkeypatch.setattr(backends, "_flash4", lambda: None)
    assert resolve_backend("auto", "cuda", dtype=torch.bfloat16) is backends.flash4_block_sparse
    assert resolve_backend("auto", "cuda", dtype=torch.float32) is backends.flex_block_sparse
    with pytest.raises(ValueError, match="bfloat16 or float16, not torch.float32"):
        resolve_backend("flash4", "cuda", dtype=torch.float32)


def test_flash4_without_its_package_says_how_to_get_it(monkeypatch):
    import builtins

    from flashvsr.attention import backends

    real_import = builtins.__import__

    def no_flash_attn(name, *args, **kwargs):
        if name.startswith("flash_attn"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    backends._flash4.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_flash_attn)
    with pytest.raises(ValueError, match="pip install flash-attn-4"):
        resolve_backend("flash4", "cuda")
    backends._flash4.cache_clear()


def test_cache_slots_follow_the_reference_rule():
    table = SlotTable(capacity=3)
    first = table.plan(new_slices=3, kv_slices=3)
    assert first.read == () and first.writes == ((0, 0), (1, 1), (2, 2)) and first.after == (0, 1, 2)
    table.order = list(first.after)
    second = table.plan(new_slices=1, kv_slices=3)  # 4 slices > 3: the oldest (slot 0) goes
    assert second.read == (0, 1, 2) and second.writes == ((0, 0),) and second.after == (1, 2, 0)
    table.order = list(second.after)
    assert table.plan(1, 3).writes == ((0, 1),) and table.plan(1, 3).after == (2, 0, 1)
    small = SlotTable(capacity=AttentionPlan.build(16, 16, 3, 1.0, kv_slices=1).cache_capacity)
    assert small.capacity == 2  # one slice dropped per call: two stay after the first call
    plan = small.plan(3, kv_slices=1)
    assert plan.writes == ((1, 0), (2, 1)) and plan.after == (0, 1)


def test_flex_kernel_may_compile_many_shapes_per_process():
    """A process that serves several frame sizes compiles FlexAttention once per shape; past
    torch's default of 8 it would fall back to an unfused kernel that runs out of memory."""
    from flashvsr.attention import backends

    backends._flex()
    assert torch._dynamo.config.recompile_limit >= backends.FLEX_RECOMPILE_LIMIT >= 64


def test_fp8_kv_cache_round_trip_is_within_e4m3_precision():
    """Each cached key/value vector is stored as e4m3 with its own scale: relative error per
    entry at most half an e4m3 step (2⁻⁴) of the vector's largest entry."""
    from flashvsr.attention.lcsa import FP8, quantize_fp8

    x = torch.randn(2, 256, 4, 64) * torch.logspace(-3, 2, 256)[None, :, None, None]  # scales vary per token
    q, scale = quantize_fp8(x)
    assert q.dtype == FP8 and scale.shape == (2, 256, 4, 1)
    back = q.float() * scale
    err = (back - x).abs() / x.abs().amax(dim=-1, keepdim=True)
    assert float(err.max()) <= 2**-4
    assert float(err.mean()) < 0.01


def test_fp8_kv_cache_stream_stays_close_to_the_exact_cache():
    """The opt-in lossy format: same frames, close to the exact cache's output, half the bytes."""
    from flashvsr.config import EngineConfig, SparseAttentionConfig
    from flashvsr.engine.memory import estimate_stream
    from flashvsr.engine.stream import StreamingEngine

    from .conftest import random_frames, tiny_models

    models = tiny_models()
    frames = random_frames(25, 128, 256)
    outs, engines = {}, {}
    for fmt in ("model", "fp8"):
        cfg = EngineConfig(attention=SparseAttentionConfig(local_range=3, kv_cache=fmt), dtype="float32", device="cpu")
        engines[fmt] = StreamingEngine(models, cfg)
        state = engines[fmt].start(128, 256)
        outs[fmt] = torch.cat([engines[fmt].push(state, frames), engines[fmt].finish(state)])
        if fmt == "fp8":
            assert state.kv.k.dtype == torch.float8_e4m3fn and state.kv.ring(0).keys().dtype == torch.float32
    assert outs["fp8"].shape == outs["model"].shape == (25, 3, 128, 256)
    diff = (outs["fp8"] - outs["model"]).abs()
    assert 0 < float(diff.mean()) < 0.01 and float(diff.max()) < 0.2
    exact = estimate_stream(models, engines["model"].config, 768, 1408)
    fp8 = estimate_stream(models, engines["fp8"].config, 768, 1408)
    assert fp8.held < exact.held
    with pytest.raises(ValueError, match="kv_cache"):
        SparseAttentionConfig(kv_cache="int4")


def stream_all(engine, frames: torch.Tensor, kernel=None, writes=None) -> torch.Tensor:
    """Every output frame of one stream of ``frames``, with the engine's attention kernel or KV
    writes replaced where given."""
    engine.kernel = kernel or engine.kernel
    engine.kv_writes = writes or engine.kv_writes
    state = engine.start(*frames.shape[-2:])
    return torch.cat([engine.push(state, frames), engine.finish(state)])


def tiny_cpu_engine(models, kv_cache: str = "model", **settings):
    from flashvsr.config import EngineConfig, SparseAttentionConfig
    from flashvsr.engine.stream import StreamingEngine

    attention = SparseAttentionConfig(local_range=3, kv_cache=kv_cache)
    config = EngineConfig(attention=attention, dtype="float32", **settings)
    return StreamingEngine(models, config)


def one_call_kernel(q, parts):
    from flashvsr.attention.backends import gather_block_sparse

    return gather_block_sparse(q, parts)


one_call_kernel.takes_columns = True  # reads the pool through window columns, as FlashAttention-4 does


def test_one_call_over_the_kv_pool_matches_the_ring_and_the_call_as_two_parts():
    """Kernels that take columns see a layer's ring and the call's windows (copied to the pool's
    spare slot) in one call; others get two parts. Same keys, same masks: the same frames up to
    the order of float32 sums."""
    from flashvsr.attention.backends import gather_block_sparse

    from .conftest import random_frames, tiny_models

    models, frames = tiny_models(), random_frames(49, 256, 256)  # 5 DiT calls: the ring's slots wrap around
    seen = []

    def joined(q, parts):
        seen.append(len(parts[0]))
        return gather_block_sparse(q, parts)

    joined.takes_columns = True
    outs = {name: stream_all(tiny_cpu_engine(models), frames, kernel)
            for name, kernel in (("joined", joined), ("parts", lambda q, parts: gather_block_sparse(q, parts)))}
    layers = len(models.dit.blocks)
    assert seen == [3] * layers + [4] * (4 * layers)  # call 0 has nothing cached: its own windows, as before
    torch.testing.assert_close(outs["joined"], outs["parts"], rtol=0, atol=2e-5)


class DeferredWrites:
    """KV copies run as late as a side stream may run them: at the next wait."""

    def __init__(self):
        self.pending, self.waits, self.most_pending = [], 0, 0

    def copy(self, write, *inputs):
        self.pending.append(write)

    def wait(self):
        self.waits += 1
        self.most_pending = max(self.most_pending, len(self.pending))
        while self.pending:
            self.pending.pop(0)()


@pytest.mark.parametrize("joined", [True, False], ids=["one call over the pool", "two parts"])
def test_kv_copies_run_as_late_as_the_waits_allow_give_the_same_frames(joined):
    """Copies on a side stream run any time between their launch and the next wait. Run at the
    latest (deferred to the wait) they must give what copies at once give: the attention waits
    for the spare, and the call's end for the rest. Each layer's attention waits for the copies
    before it, so a side stream holds at most two copies' inputs (a call's first layers' keys and
    values held until the call's end measured +7.6 GB at 1080p)."""
    from flashvsr.attention.backends import gather_block_sparse

    from .conftest import random_frames, tiny_models

    def kernel(q, parts):
        return gather_block_sparse(q, parts)

    kernel.takes_columns = joined
    models, frames = tiny_models(), random_frames(49, 256, 256)  # 5 DiT calls: the ring's slots wrap around
    deferred = DeferredWrites()
    at_once = stream_all(tiny_cpu_engine(models), frames, kernel)
    late = stream_all(tiny_cpu_engine(models), frames, kernel, deferred)
    assert deferred.waits > 0 and not deferred.pending
    assert deferred.most_pending == (2 if joined else 1)  # the last layer's ring copy (and this layer's spare)
    assert torch.equal(late, at_once)


@pytest.mark.parametrize("writes", ["at once", "deferred"])
def test_roaming_kv_slots_give_the_frames_of_fixed_rings(writes):
    """Roaming slots write each new slice once, to a free slot that stays its home: the same keys
    and the same masks as fixed rings, so the same frames, bit for bit, with copies at once or as
    late as a side stream may run them. Each layer's slots stay distinct and within its half."""
    from flashvsr.attention.lcsa import ROAMING_SPARES

    from .conftest import random_frames, tiny_models

    models, frames = tiny_models(), random_frames(49, 256, 256)  # 5 DiT calls: every slot moves
    fixed = stream_all(tiny_cpu_engine(models), frames, one_call_kernel)
    engine = tiny_cpu_engine(models, roaming_kv_slots=True)
    deferred = DeferredWrites() if writes == "deferred" else None
    state = engine.start(*frames.shape[-2:])
    engine.kernel, engine.kv_writes = one_call_kernel, deferred or engine.kv_writes
    roaming = torch.cat([engine.push(state, frames), engine.finish(state)])
    assert torch.equal(roaming, fixed)
    pool, homes = state.kv, state.homes
    assert pool.roaming and homes is not None
    start = type(homes).start(pool)
    assert homes != start  # the free slots moved
    for layer, ring in enumerate(homes.homes):
        first, end = pool.span(layer)
        assert len(set(ring)) == len(ring) and all(first <= s < end for s in ring)
        assert homes.free[pool.half(layer)] not in ring
    every = [s for ring in homes.homes for s in ring] + list(homes.free)
    assert sorted(every) == list(range(pool.layers * pool.capacity + ROAMING_SPARES))  # each slot has one owner


def test_roaming_kv_slots_only_where_every_steady_call_is_one_call():
    """Kernels that take two parts (flex, dense), the fp8 cache and CUDA graphs keep fixed rings."""
    from flashvsr.engine.memory import estimate_stream

    from .conftest import random_frames, tiny_models

    models, frames = tiny_models(), random_frames(25, 128, 256)  # the first call (and the pool) needs 21
    for kernel, settings, roams in ((one_call_kernel, {}, True), (None, {}, False),
                                    (one_call_kernel, {"cuda_graphs": True}, False)):  # fmt: skip
        engine = tiny_cpu_engine(models, roaming_kv_slots=True, **settings)
        engine.kernel = kernel or (lambda q, parts: one_call_kernel(q, parts))  # no columns: two parts
        state = engine.start(128, 256)
        engine.push(state, frames)
        assert state.kv.roaming == roams and (state.homes is not None) == roams
    fp8 = tiny_cpu_engine(models, kv_cache="fp8", roaming_kv_slots=True)
    fp8.kernel = one_call_kernel
    state = fp8.start(128, 256)
    fp8.push(state, frames)
    assert not state.kv.roaming
    plain, roaming = (estimate_stream(models, tiny_cpu_engine(models, roaming_kv_slots=r).config, 768, 1408)
                      for r in (False, True))  # fmt: skip
    assert roaming.held > plain.held  # the planner counts the second free slot
    roams = tiny_cpu_engine(models, roaming_kv_slots=True).config
    plan = lambda **changes: estimate_stream(models, replace(roams, **changes), 768, 1408)  # noqa: E731
    fp8 = replace(roams.attention, kv_cache="fp8")
    for fixed in ({"attention_backend": "flex"}, {"cuda_graphs": True}, {"attention": fp8}):
        assert plan(**fixed) == plan(**fixed, roaming_kv_slots=False)  # ... only where the stream may roam


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_kv_copies_on_a_side_stream_give_the_same_frames():
    """``kv_copy_stream``: the same copies on another stream, so the same frames, bit for bit."""
    from flashvsr.attention.kv_writes import SideStreamWrites
    from flashvsr.bench import random_upscaler

    from .conftest import random_frames

    frames = random_frames(41, 256, 384).cuda()
    outs = {}
    for aside in (False, True):
        engine = random_upscaler(2, "cuda", kv_copy_stream=aside, offload_weights="off").engine
        assert isinstance(engine.kv_writes, SideStreamWrites) == aside
        outs[aside] = stream_all(engine, frames)
    assert torch.equal(outs[True], outs[False])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_roaming_kv_slots_give_the_frames_of_fixed_rings():
    """The same kernel reads the same windows in the same column order from other slots: the same
    frames, bit for bit, with the copies on a side stream (as ``--overlap-decode`` runs them)."""
    from flashvsr.attention.backends import flash4_usable
    from flashvsr.bench import random_upscaler

    from .conftest import random_frames

    backend = "flash4" if flash4_usable(torch.device("cuda")) else "gather"
    frames = random_frames(41, 256, 384).cuda()
    outs = {}
    for roaming in (False, True):
        up = random_upscaler(2, "cuda", attention_backend=backend, roaming_kv_slots=roaming, kv_copy_stream=True,
                             offload_weights="off")  # fmt: skip
        state = up.engine.start(256, 384)
        outs[roaming] = torch.cat([up.engine.push(state, frames), up.engine.finish(state)])
        assert state.kv.roaming == roaming
    assert torch.equal(outs[True], outs[False])


def test_kv_copies_stay_on_the_callers_stream_without_a_gpu():
    from flashvsr.attention.kv_writes import INLINE, kv_writes_for

    assert kv_writes_for(torch.device("cpu"), aside=True) is INLINE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlashAttention-4 needs a GPU")
def test_on_a_gpu_flash4_over_the_kv_pool_is_as_close_to_float32_as_two_parts():
    """The same comparison with FlashAttention-4's block tables mapped to the pool's windows:
    official-width random weights, one layer. One call and two parts round differently in bf16,
    and a random decoder magnifies that (0.09 apart at most), so each is held to float32 instead."""
    from flashvsr.attention.backends import flash4_block_sparse, flash4_usable
    from flashvsr.bench import random_official_models, random_upscaler
    from flashvsr.pipeline import Upscaler, engine_config

    from .conftest import random_frames

    if not flash4_usable(torch.device("cuda")):
        pytest.skip("FlashAttention-4 is not installed")
    frames = random_frames(41, 256, 384).cuda()
    exact = stream_all(Upscaler(random_official_models(1, "tiny", "cuda"), engine_config(
        "tiny", "cuda", "float32", attention_backend="gather", offload_weights="off")).engine, frames)
    errors = {}
    for name, kernel in (("joined", flash4_block_sparse), ("parts", lambda q, parts: flash4_block_sparse(q, parts))):
        engine = random_upscaler(1, "cuda", attention_backend="flash4", offload_weights="off").engine
        out = stream_all(engine, frames, kernel)
        errors[name] = (out.float() - exact).abs().mean().item()
    assert errors["joined"] <= 1.25 * errors["parts"], errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlashAttention-4 needs a GPU")
def test_on_a_gpu_flash4_reads_windows_past_two_to_the_31_elements():
    """FlashAttention-4's tables may point anywhere in keys of JOINED_MAX_ELEMENTS elements (2.16e9,
    past 2³¹): a layer's span of the pool is read in one call up to that size (1080p: 1.2e9)."""
    from flashvsr.attention.backends import dense_block_sparse, flash4_block_sparse, flash4_usable
    from flashvsr.attention.lcsa import JOINED_MAX_ELEMENTS

    if not flash4_usable(torch.device("cuda")):
        pytest.skip("FlashAttention-4 is not installed")
    heads, d = 12, 128
    windows = JOINED_MAX_ELEMENTS // (128 * heads * d)
    assert windows * 128 * heads * d > 2**31  # the offsets past 32 bits are what is tested
    g = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(1, 4 * 128, heads, d, device="cuda", generator=g).bfloat16()
    k = torch.empty(1, windows * 128, heads, d, device="cuda", dtype=torch.bfloat16)
    v = torch.empty_like(k)
    columns = torch.tensor([3, 5_000, windows - 2, windows - 1], device="cuda", dtype=torch.int32)  # two past 2³¹
    for c in columns.tolist():
        k[:, c * 128 : (c + 1) * 128].normal_(generator=g)
        v[:, c * 128 : (c + 1) * 128].normal_(generator=g)
    mask = torch.rand(1, heads, 4, 4, device="cuda", generator=g) < 0.6
    got = flash4_block_sparse(q, [(k, v, mask, columns)]).float()
    keys = torch.cat([k[:, c * 128 : (c + 1) * 128] for c in columns.tolist()], dim=1)
    values = torch.cat([v[:, c * 128 : (c + 1) * 128] for c in columns.tolist()], dim=1)
    want = dense_block_sparse(q.float(), [(keys.float(), values.float(), mask)])
    assert (got - want).abs().max() < 0.02
