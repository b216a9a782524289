"""The DiT's query/key RMS norm and rotary embedding in one pass on the GPU.

Each self-attention layer normalises its queries and keys over the model width and rotates
each head's consecutive pairs by the token's angles (SPEC §2). Compiled by Inductor this was
one kernel of ≈ 0.1 ms per layer at 1408×768 for 4 × 26 MB of traffic (benchmarks/results/
2026-11-22_h100_s11/call4_dit_parts_profile.txt): ≈ 3 times the bandwidth floor. Here a program
takes two token rows, reads each contiguously, splits it into its pairs in registers and writes
it rotated, rounding where the torch form rounds (after the norm, after the weight, after the
rotation). H100, 2026-12-06 (benchmarks/kernel_options.py --cases rope): 0.050 ms per call at
1408×768 and 0.072 at 1920×1080 (Inductor: 0.103, 0.160; reading the pairs as two strided loads,
four rows a program, as session 15 did: 0.082, 0.099).
"""

from __future__ import annotations

import torch

from . import HAVE_TRITON, use_triton

TOKENS_PER_PROGRAM = 2  # the fastest of 1, 2, 4 at both sizes


def usable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return x.is_contiguous() and x.dtype in (torch.bfloat16, torch.float16) and use_triton("rms_norm_rope", x, weight)


def rms_norm_rope(x: torch.Tensor, weight: torch.Tensor, eps: float, cos: torch.Tensor, sin: torch.Tensor,
                  heads: int, tokens: int = TOKENS_PER_PROGRAM) -> torch.Tensor:  # fmt: skip
    """(B, L, heads·d) → (B, L, heads, d), as the DiT's ``apply_rope(RMSNorm(x).unflatten(…), cos, sin)``
    computes it (models/dit.py, the reference): RMS norm over the last dim in float32, rounded to
    x's dtype, times ``weight``; then each head's pairs (x₀, x₁) rotated by the (L, d/2) angle
    tables, (x₀c − x₁s, x₁c + x₀s) in float32, rounded. Only where :func:`usable`."""
    b, length, width = x.shape
    half_head = width // heads // 2
    out = torch.empty(b, length, heads, 2 * half_head, device=x.device, dtype=x.dtype)
    cos, sin = cos.float().contiguous(), sin.float().contiguous()
    grid = (triton.cdiv(b * length, tokens),)
    _rms_norm_rope[grid](x, weight, cos, sin, out, b * length, length, eps, WIDTH=width, HALF_HEAD=half_head,
                         BLOCK_T=tokens, BLOCK=triton.next_power_of_2(width))  # fmt: skip
    return out


def _check_rms_norm_rope(device: torch.device) -> None:
    from ..models.dit import RMSNorm, apply_rope  # the reference (imported here: the model imports this module)

    norm = RMSNorm(1536, 1e-6).to(device, torch.bfloat16)
    norm.weight.data += 0.1 * torch.randn(1536, device=device).bfloat16()
    x = torch.randn(1, 300, 1536, device=device).bfloat16()
    angles = torch.rand(300, 64, device=device) * 6.3
    got = rms_norm_rope(x, norm.weight, norm.eps, angles.cos(), angles.sin(), 12).float()
    want = apply_rope(norm(x).unflatten(-1, (12, -1)), angles.cos(), angles.sin()).float()
    assert (got - want).abs().max() <= want.abs().max() * 2.0**-7, "more than one bfloat16 step apart"


def _check_rms_norm_rope_compiled(device: torch.device) -> None:
    x = torch.randn(1, 300, 1536, device=device).bfloat16()
    weight = torch.ones(1536, device=device).bfloat16()
    angles = torch.rand(300, 64, device=device) * 6.3
    args = (x, weight, 1e-6, angles.cos(), angles.sin(), 12)
    compiled = torch.compile(rms_norm_rope, fullgraph=True, dynamic=False)  # as the DiT's compiled halves run it
    assert torch.equal(compiled(*args), rms_norm_rope(*args))


SELF_CHECKS = {"rms_norm_rope": _check_rms_norm_rope}
COMPILED_CHECKS = {"rms_norm_rope": _check_rms_norm_rope_compiled}  # --compile runs it inside the DiT's halves


if HAVE_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _rms_norm_rope(x_ptr, w_ptr, cos_ptr, sin_ptr, out_ptr, TOKENS, L, eps,
                       WIDTH: tl.constexpr, HALF_HEAD: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK: tl.constexpr):
        """Program: BLOCK_T token rows; pair i of a row is pair i mod HALF_HEAD of head i div
        HALF_HEAD, rotated by that pair's angle for the row's position (token mod L)."""
        tokens = tl.program_id(0).to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
        cols = tl.arange(0, BLOCK)
        inside = (tokens[:, None] < TOKENS) & (cols[None, :] < WIDTH)
        offs = tokens[:, None] * WIDTH + cols[None, :]
        x = tl.load(x_ptr + offs, mask=inside, other=0.0)
        f = x.to(tl.float32)
        scale = tl.rsqrt(tl.sum(f * f, axis=1) / WIDTH + eps)
        w = tl.load(w_ptr + cols, mask=cols < WIDTH, other=0.0).to(tl.float32)
        normed = ((f * scale[:, None]).to(x.dtype).to(tl.float32) * w[None, :]).to(x.dtype).to(tl.float32)
        n0, n1 = tl.split(tl.reshape(normed, (BLOCK_T, BLOCK // 2, 2)))
        pairs = tl.arange(0, BLOCK // 2)
        angle = (tokens[:, None] % L) * HALF_HEAD + pairs[None, :] % HALF_HEAD
        pair_inside = (tokens[:, None] < TOKENS) & (pairs[None, :] < WIDTH // 2)
        c = tl.load(cos_ptr + angle, mask=pair_inside, other=0.0)
        s = tl.load(sin_ptr + angle, mask=pair_inside, other=0.0)
        rotated = tl.reshape(tl.join(n0 * c - n1 * s, n1 * c + n0 * s), (BLOCK_T, BLOCK))
        tl.store(out_ptr + offs, rotated.to(x.dtype), mask=inside)
