"""FP8 linears for the DiT: a lossy, opt-in speed option (``--linears fp8``) for GPUs with FP8
tensor cores (Hopper and newer).

Every weight is stored once as e4m3 with a scale per output channel; each call scales every
token's activations the same way on the fly, multiplies on the FP8 tensor cores with float32
accumulation (``torch._scaled_mm``), and rescales to the model dtype. Half the weights' memory and
up to twice the matrix rate, but the outputs change (the masks too: LCSA picks blocks from the
queries and keys these layers make), so it is never the default and never used for parity.
"""

from __future__ import annotations

import torch
from torch import nn

from ..fp8 import FP8, quantize_rows

FP8_LINEARS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.o", "ffn.0", "ffn.2")
FP8_ALIGNMENT = 16  # the FP8 matrix kernels need both dimensions of a weight to be multiples of this
FP8_MIN_CAPABILITY = (8, 9)  # CUDA GPUs with FP8 tensor cores: Ada, Hopper and newer


class Fp8Linear(nn.Module):
    """``nn.Linear``'s function with an e4m3 weight (``weight``, (out, in), kept as its bytes so that
    ``module.to(dtype)`` cannot convert it) and float32 scales per output channel (``weight_scale``,
    (1, out)); the bias stays in the model dtype."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        out_features, in_features = linear.weight.shape
        if out_features % FP8_ALIGNMENT or in_features % FP8_ALIGNMENT:
            raise ValueError(f"FP8 linears need sizes that are multiples of {FP8_ALIGNMENT}, got {in_features}→{out_features}")
        weight, scale = quantize_rows(linear.weight.detach(), torch.float32)
        self.out_dtype = linear.weight.dtype
        self.register_buffer("weight", weight.view(torch.uint8))
        self.register_buffer("weight_scale", scale.t().contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, scale = quantize_rows(x.flatten(0, -2), torch.float32)
        weight, weight_scale = self.weight.view(FP8).t(), self.weight_scale.float()
        if x.device.type == "cuda":
            out = torch._scaled_mm(rows, weight, scale_a=scale, scale_b=weight_scale, out_dtype=self.out_dtype)
        else:  # the same products in float32: CPU _scaled_mm takes per-row scales only in recent torch (not 2.11)
            out = ((rows.float() * scale) @ (weight.float() * weight_scale)).to(self.out_dtype)
        out = out.unflatten(0, x.shape[:-1])
        return out if self.bias is None else out + self.bias


def use_fp8_linears(blocks: nn.ModuleList) -> int:
    """Replace the DiT blocks' big linears (attention projections and FFN) by :class:`Fp8Linear`, in
    place; returns how many. The text context's keys and values are computed before, at full precision."""
    count = 0
    for block in blocks:
        for name in FP8_LINEARS:
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name)
            linear = parent.get_submodule(child)
            if isinstance(linear, nn.Linear):
                setattr(parent, child, Fp8Linear(linear))  # nn.Sequential children are set by their index name too
                count += 1
    return count
