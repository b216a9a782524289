"""The one-step FlashVSR DiT: the Wan2.1-T2V-1.3B transformer (SPEC §2).

A plain ``nn.Module`` whose parameter names match ``diffusion_pytorch_model_streaming_dmd``.
Self-attention is delegated to an :class:`AttentionFn` supplied by the caller (the streaming
engine's sparse attention, or dense attention during training), so the module holds no
per-stream state. Everything that does not depend on the video — the time modulation and the
cross-attention keys/values of the fixed text context — is computed once by
:meth:`WanDiT.condition`.
"""

from __future__ import annotations

import functools
import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DiTConfig
from ..kernels import rope as rope_kernel
from ..transfer import to_device

ROPE_THETA = 10000.0
INFERENCE_TIMESTEP = 1000.0


class AttentionFn(Protocol):
    """Self-attention kernel: q, k, v of shape (B, L, heads, head_dim), tokens in (t, y, x)
    order, already normalised and rotated; returns (B, L, heads · head_dim)."""

    def __call__(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor: ...


BlockWeights = Callable[[int], AbstractContextManager]  # ``with weights(i):`` block i's weights are on the device


def resident_weights(index: int) -> AbstractContextManager:
    """The usual case: every block's weights stay where they are."""
    return nullcontext()


def dense_attention(layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Full attention over all tokens (Stage-1 training, tests)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2).flatten(2)


# --------------------------------------------------------------------------------------------
# Embeddings


def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    """(B,) timesteps → (B, dim): cosines then sines of ``t · 10000^(-i/half)``, in float64."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64)[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Head dims given to (time, height, width) rotations: 44/42/42 for 128."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_inverse_frequencies(part_dim: int) -> torch.Tensor:
    return ROPE_THETA ** (-torch.arange(0, part_dim, 2, dtype=torch.float64) / part_dim)


def rope_cos_sin(
    time_positions: torch.Tensor, tokens_h: int, tokens_w: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation tables for a (frames, tokens_h, tokens_w) grid: two (L, head_dim/2) tensors.

    Angles are computed in float64 from the positions directly, so time positions may grow
    without bound (the reference's 1024-entry table overflows after ~4,080 frames).
    """
    d_t, d_h, d_w = rope_split(head_dim)
    f = time_positions.numel()
    a_t = time_positions.to(torch.float64)[:, None] * rope_inverse_frequencies(d_t)[None]
    a_h = torch.arange(tokens_h, dtype=torch.float64)[:, None] * rope_inverse_frequencies(d_h)[None]
    a_w = torch.arange(tokens_w, dtype=torch.float64)[:, None] * rope_inverse_frequencies(d_w)[None]
    angles = torch.cat(
        [
            a_t[:, None, None, :].expand(f, tokens_h, tokens_w, -1),
            a_h[None, :, None, :].expand(f, tokens_h, tokens_w, -1),
            a_w[None, None, :, :].expand(f, tokens_h, tokens_w, -1),
        ],
        dim=-1,
    ).reshape(f * tokens_h * tokens_w, head_dim // 2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive element pairs (x₀, x₁) of (B, L, heads, d) by the (L, d/2) angle tables:
    (x₀c − x₁s, x₁c + x₀s), written as x·c + swap(x)·(−s, s) so that the compiled kernel needs no
    stack of halves (11 % off the DiT's pre-attention part on the H100, benchmarks/dit_parts.py)."""
    xf = x.float()
    c = cos.repeat_interleave(2, dim=-1)[None, :, None, :]
    s = torch.stack([-sin, sin], dim=-1).flatten(-2)[None, :, None, :]
    swapped = xf.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return (xf * c + swapped * s).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Layers


class RMSNorm(nn.Module):
    """RMS norm over the last dim, computed in float32 and cast back before the weight."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


def layer_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without affine parameters, in float32."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def split_modulation(table: torch.Tensor, t_mod: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``table`` (1, n, dim) + time modulation, per sequence (B, n, dim) or per token
    (B, L, n, dim) → n tensors broadcastable over (B, L, dim)."""
    if t_mod.ndim == 3:
        t_mod = t_mod[:, None]
    return (table[:, None] + t_mod).to(dtype).unbind(dim=2)


class AttentionProjections(nn.Module):
    """The q/k/v/o projections and q/k RMSNorms shared by self- and cross-attention."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.k = nn.Linear(cfg.dim, cfg.dim)
        self.v = nn.Linear(cfg.dim, cfg.dim)
        self.o = nn.Linear(cfg.dim, cfg.dim)
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)


def normed_rotated(x: torch.Tensor, norm: RMSNorm, rope: tuple[torch.Tensor, torch.Tensor], heads: int):
    """``apply_rope(norm(x))`` per head, (B, L, heads, d); one Triton pass on a GPU at inference
    (flashvsr/kernels/rope.py: the same roundings, sums of squares in another order)."""
    if rope_kernel.usable(x, norm.weight):
        return rope_kernel.rms_norm_rope(x, norm.weight, norm.eps, *rope, heads)
    return apply_rope(norm(x).unflatten(-1, (heads, -1)), *rope)


class SelfAttention(AttentionProjections):
    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        """Normalised, rotated queries and keys and the values, as (B, L, heads, d)."""
        q = normed_rotated(self.q(x), self.norm_q, rope, self.num_heads)
        k = normed_rotated(self.k(x), self.norm_k, rope, self.num_heads)
        v = self.v(x).unflatten(-1, (self.num_heads, -1))
        return q, k, v


class CrossAttention(AttentionProjections):
    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of the (fixed) text context, as (B, heads, tokens, d)."""
        heads = (self.num_heads, -1)
        k = self.norm_k(self.k(context)).unflatten(-1, heads).transpose(1, 2)
        v = self.v(context).unflatten(-1, heads).transpose(1, 2)
        return k, v

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
        k, v = kv
        k, v = k.expand(q.shape[0], -1, -1, -1), v.expand(q.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).flatten(2))


class DiTBlock(nn.Module):
    CONDITIONING_ONLY = ("cross_attn.k.", "cross_attn.v.", "cross_attn.norm_k.")  # used by condition() alone

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        self.modulation = nn.Parameter(torch.zeros(1, 6, cfg.dim))
        self.self_attn = SelfAttention(cfg)
        self.cross_attn = CrossAttention(cfg)
        self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim)
        )
        self.compiled_halves = None  # (before, after) from compile_halves()

    def forward(self, x, t_mod, text_kv, rope, attention: AttentionFn, layer: int):
        before, after = self.compiled_halves or (self.before_attention, self.after_attention)
        q, k, v = before(x, t_mod, rope)
        return after(x, attention(layer, q, k, v), t_mod, text_kv)

    def before_attention(self, x, t_mod, rope):
        shift1, scale1, *_ = split_modulation(self.modulation, t_mod, x.dtype)
        return self.self_attn.qkv(modulate(layer_norm(x, self.eps), shift1, scale1), rope)

    def after_attention(self, x, attn, t_mod, text_kv, gelu_epilogue: bool = False):
        _, _, gate1, shift2, scale2, gate2 = split_modulation(self.modulation, t_mod, x.dtype)
        x = x + gate1 * self.self_attn.o(attn)
        x = x + self.cross_attn(self.norm3(x), text_kv)
        return x + gate2 * self.feed_forward(modulate(layer_norm(x, self.eps), shift2, scale2), gelu_epilogue)

    def feed_forward(self, x: torch.Tensor, gelu_epilogue: bool = False) -> torch.Tensor:
        """The FFN. ``gelu_epilogue`` (CUDA): the GELU (tanh) runs in the first matmul's cuBLASLt
        epilogue, rounded to bf16 once instead of twice: 16 % off that pair's time on the H100
        (benchmarks/kernel_options.py; the CPU's version of that op computes erf's GELU instead)."""
        if not (gelu_epilogue and x.is_cuda and isinstance(self.ffn[0], nn.Linear)):  # not for FP8 linears
            return self.ffn(x)
        up, _, down = self.ffn
        hidden = torch._addmm_activation(up.bias, x.flatten(0, -2), up.weight.t(), use_gelu=True)
        return down(hidden.unflatten(0, x.shape[:-1]))

    def compile_halves(self, gelu_epilogue: bool = False, **options) -> None:
        """Compile the element-wise-heavy halves (norms, RoPE, modulation, gating, FFN)
        around the sparse attention, which stays a separate kernel."""
        after = functools.partial(self.after_attention, gelu_epilogue=gelu_epilogue)
        self.compiled_halves = (
            torch.compile(self.before_attention, **options),
            torch.compile(after, **options),
        )


class Head(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.eps = cfg.eps
        out = cfg.out_channels * math.prod(cfg.patch_size)
        self.modulation = nn.Parameter(torch.zeros(1, 2, cfg.dim))
        self.head = nn.Linear(cfg.dim, out)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """``t_emb`` per sequence (B, dim) or per token (B, L, dim)."""
        shift, scale = split_modulation(self.modulation, t_emb.unsqueeze(-2), x.dtype)
        return self.head(modulate(layer_norm(x, self.eps), shift, scale))


# --------------------------------------------------------------------------------------------
# The model


@dataclass
class DiTConditioning:
    """Video-independent inputs of one forward: time modulation and text keys/values.

    The time terms are per sequence, (B, dim) and (B, 6, dim), or per token, (B, L, dim) and
    (B, L, 6, dim), when sequences packing items of different noise levels are trained."""

    t_emb: torch.Tensor
    t_mod: torch.Tensor
    text_kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block, (B, heads, tokens, d)


class WanDiT(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        self.gradient_checkpointing = False
        self.patch_embedding = nn.Conv3d(cfg.in_channels, cfg.dim, cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, 6 * cfg.dim))
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = Head(cfg)

    # -- conditioning -------------------------------------------------------------------------
    def time_conditioning(self, timestep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) timesteps → t_emb (B, dim) and t_mod (B, 6, dim), in float32."""
        dtype = self.time_embedding[0].weight.dtype
        emb = sinusoidal_embedding(self.cfg.freq_dim, timestep).to(dtype)
        t_emb = self.time_embedding(emb)
        t_mod = self.time_projection(t_emb).unflatten(1, (6, self.cfg.dim))
        return t_emb.float(), t_mod.float()

    def text_conditioning(self, context: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ctx = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
        return [block.cross_attn.context_kv(ctx) for block in self.blocks]

    def condition(self, context: torch.Tensor, timestep: torch.Tensor | float = INFERENCE_TIMESTEP) -> DiTConditioning:
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([float(timestep)], device=context.device)
        t_emb, t_mod = self.time_conditioning(timestep)
        return DiTConditioning(t_emb=t_emb, t_mod=t_mod, text_kv=self.text_conditioning(context))

    # -- forward --------------------------------------------------------------------------------
    def compile_blocks(self, gelu_epilogue: bool = False, **options) -> None:
        """torch.compile every block's halves around self-attention (CUDA inference)."""
        for block in self.blocks:
            block.compile_halves(gelu_epilogue, **options)

    def patchify(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, f, H/8, W/8) → (B, f·h·w, dim), tokens in (t, y, x) order."""
        return self.patch_embedding(latents).flatten(2).transpose(1, 2)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, f·h·w, pt·py·px·C) → (B, C, f·pt, h·py, w·px)."""
        f, h, w = grid
        pt, py, px = self.cfg.patch_size
        x = x.view(x.shape[0], f, h, w, pt, py, px, self.cfg.out_channels)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(x.shape[0], self.cfg.out_channels, f * pt, h * py, w * px)

    def forward(
        self,
        latents: torch.Tensor,
        cond: DiTConditioning,
        attention: AttentionFn = dense_attention,
        lq_tokens: torch.Tensor | None = None,
        time_offset: int = 0,
        token_order: torch.Tensor | None = None,
        block_weights: BlockWeights = resident_weights,
    ) -> torch.Tensor:
        """Velocity prediction for ``latents`` (B, 16, f, H/8, W/8); ``lq_tokens`` (B, L, dim)
        from the LR projection are added before block 0. RoPE time positions start at
        ``time_offset``. With ``token_order`` (a permutation of the (t, y, x) tokens, e.g.
        window order) the blocks and ``attention`` see tokens in that order. ``block_weights``
        brings each block's weights to the device for its turn (streamed from host memory)."""
        x, rope, grid = self.embed(latents, lq_tokens, time_offset, token_order)
        x = self.forward_tokens(x, cond, rope, attention, block_weights)
        return self.unembed(x, grid, token_order)

    def embed(
        self,
        latents: torch.Tensor,
        lq_tokens: torch.Tensor | None = None,
        time_offset: int = 0,
        token_order: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], tuple[int, int, int]]:
        """Patch tokens (plus LR-projection tokens), their RoPE tables and the token grid, all
        in ``token_order``: the inputs of :meth:`forward_tokens`."""
        grid = self.token_grid(latents)
        x = self.patchify(latents.to(self.patch_embedding.weight.dtype))
        if lq_tokens is not None:
            x = x + lq_tokens.to(x.dtype)
        positions = torch.arange(time_offset, time_offset + grid[0])
        cos, sin = (to_device(t, x.device) for t in rope_cos_sin(positions, grid[1], grid[2], self.cfg.head_dim))
        if token_order is not None:
            x, cos, sin = x[:, token_order], cos[token_order], sin[token_order]
        return x, (cos, sin), grid

    def unembed(self, x: torch.Tensor, grid: tuple[int, int, int], token_order: torch.Tensor | None = None):
        """Head outputs of :meth:`forward_tokens` back to (t, y, x) order and latent shape."""
        if token_order is not None:
            x = x[:, torch.argsort(token_order)]
        return self.unpatchify(x, grid)

    def token_grid(self, latents: torch.Tensor) -> tuple[int, int, int]:
        pt, py, px = self.cfg.patch_size
        return latents.shape[2] // pt, latents.shape[3] // py, latents.shape[4] // px

    def forward_tokens(
        self,
        x: torch.Tensor,
        cond: DiTConditioning,
        rope: tuple[torch.Tensor, torch.Tensor],
        attention: AttentionFn,
        block_weights: BlockWeights = resident_weights,
    ) -> torch.Tensor:
        """The transformer on patch tokens (B, L, dim) → head outputs (B, L, pt·py·px·C).
        Token order is free as long as ``rope`` and ``attention`` follow it (packed training)."""
        for i, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(
                    block, x, cond.t_mod, cond.text_kv[i], rope, attention, i, use_reentrant=False
                )
            else:
                with block_weights(i):
                    x = block(x, cond.t_mod, cond.text_kv[i], rope, attention, i)
        return self.head(x, cond.t_emb)
