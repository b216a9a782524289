"""The e4m3 number format of the lossy FP8 options (``--kv-cache fp8``, ``--linears fp8``): each row
of a tensor (a token's vector, a weight's output channel) is scaled so that its largest entry lands
on e4m3's largest finite value, and stored as e4m3 values plus that scale."""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3 value


def quantize_rows(x: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, d) → e4m3 values and a scale per row (…, 1) in ``scale_dtype``, with ``values · scale ≈ x``."""
    scale = (x.abs().amax(dim=-1, keepdim=True).float() / FP8_MAX).to(scale_dtype)
    scale = scale.clamp(min=torch.finfo(scale_dtype).tiny)  # an all-zero row stays zero, not NaN
    return (x.float() / scale.float()).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale
