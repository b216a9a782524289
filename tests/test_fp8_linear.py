"""FP8 linears (``--linears fp8``): the lossy, opt-in speed option for the DiT's big matrices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flashvsr.config import EngineConfig, SparseAttentionConfig
from flashvsr.engine.stream import StreamingEngine
from flashvsr.models.fp8_linear import FP8_LINEARS, Fp8Linear, use_fp8_linears

from .conftest import random_frames, tiny_models


@torch.no_grad()
def test_an_fp8_linear_is_the_linear_within_e4m3_precision():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 5, 64) * torch.logspace(-2, 1, 5)[None, :, None]  # tokens of very different sizes
    fp8 = Fp8Linear(linear)
    assert fp8.weight.view(torch.float8_e4m3fn).shape == (48, 64) and fp8.weight_scale.shape == (1, 48)
    out, ref = fp8(x), linear(x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    rel = (out - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert 0 < float(rel.max()) < 0.08  # e4m3 keeps 3 mantissa bits: a few per cent per product
    assert torch.equal(Fp8Linear(linear)(torch.zeros(2, 64)), linear.bias.expand(2, -1))  # zero rows: the bias alone


@torch.no_grad()
def test_moving_the_model_to_another_dtype_leaves_the_fp8_weights_alone():
    linear = nn.Linear(64, 48)
    fp8 = Fp8Linear(linear)
    x = torch.randn(4, 64)
    before = fp8(x)
    fp8.to(torch.float64).to(torch.float32)  # as models.to(device, dtype) would
    assert fp8.weight.dtype == torch.uint8 and torch.equal(fp8(x), before)


def test_sizes_the_fp8_kernels_cannot_take_are_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        Fp8Linear(nn.Linear(24, 32))


def test_every_block_gets_its_eight_big_linears_in_fp8_and_nothing_else():
    dit = tiny_models().dit
    assert use_fp8_linears(dit.blocks) == len(FP8_LINEARS) * len(dit.blocks)
    for block in dit.blocks:
        assert all(isinstance(block.get_submodule(name), Fp8Linear) for name in FP8_LINEARS)
        assert isinstance(block.cross_attn.k, nn.Linear) and isinstance(block.cross_attn.v, nn.Linear)  # the fixed text context
    assert use_fp8_linears(dit.blocks) == 0  # once is enough


def test_an_engine_with_fp8_linears_stays_close_to_the_exact_one():
    frames = random_frames(17, 128, 256)
    outs = {}
    for linears in ("model", "fp8"):
        cfg = EngineConfig(attention=SparseAttentionConfig(local_range=3), dtype="float32", device="cpu", linears=linears)
        engine = StreamingEngine(tiny_models(), cfg)
        state = engine.start(128, 256)
        outs[linears] = torch.cat([engine.push(state, frames), engine.finish(state)])
    assert outs["fp8"].shape == outs["model"].shape == (17, 3, 128, 256)
    diff = (outs["fp8"] - outs["model"]).abs()
    assert 0 < float(diff.mean()) < 0.02 and float(diff.max()) < 0.3


def test_fp8_linears_are_checked_where_they_are_set():
    with pytest.raises(ValueError, match="linears"):
        EngineConfig(linears="int8")
    with pytest.raises(ValueError, match="streamed"):
        EngineConfig(linears="fp8", offload_weights="on")


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9), reason="needs FP8 tensor cores"
)
@torch.no_grad()
def test_on_fp8_tensor_cores_in_bfloat16_too():
    torch.manual_seed(0)
    linear = nn.Linear(1536, 8960).to("cuda", torch.bfloat16)
    x = torch.randn(2, 1024, 1536, device="cuda", dtype=torch.bfloat16)
    out, ref = Fp8Linear(linear)(x), linear(x)
    assert out.dtype == torch.bfloat16
    assert float((out.float() - ref.float()).norm() / ref.float().norm()) < 0.08
