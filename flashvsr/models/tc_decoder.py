"""Tiny Conditional Decoder: latents + LQ frames → RGB frames (SPEC §6).

A causal, frame-recurrent 2D decoder in the TAEHV style, widened and conditioned on the LQ
video. Parameter names match ``TCDecoder.ckpt`` (``decoder.<i>``). Frames are processed in
time order; each memory block sees its own input at the previous time step, kept in a
:class:`TCDecoderMemory` that the caller owns. Each latent frame yields 4 frames, except
that the stream's first 3 are trimmed, so the first latent yields 1 (like the Wan VAE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TCDecoderConfig
from ..kernels import image as image_kernels

LATENT_CLAMP = 3.0


def conv3x3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


def relu() -> nn.ReLU:
    return nn.ReLU(inplace=True)  # each follows a convolution whose output nothing else reads: saves a full-size tensor


class Clamp(nn.Module):
    """Soft clamp ``tanh(x/3)·3``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / LATENT_CLAMP) * LATENT_CLAMP


def cat_channels(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (N, C, H, W) tensors along channels in the first one's memory layout (torch.cat
    guesses the layout from strides, and single frames cut from a batch can fool it)."""
    if parts[0].is_contiguous():
        return torch.cat(parts, dim=1)
    return torch.cat([p.permute(0, 2, 3, 1) for p in parts], dim=3).permute(0, 3, 1, 2)


class MemBlock(nn.Module):
    """``ReLU(conv(ReLU(conv(ReLU(conv([x, past]))))) + x)``. ``fused`` (CUDA): bias, ReLU and the
    residual add run in cuDNN's convolution epilogues — the same sums, rounded to bf16 once
    instead of after each step."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Sequential(
            conv3x3(2 * channels, channels), relu(), conv3x3(channels, channels), relu(), conv3x3(channels, channels)
        )

    def forward(self, x: torch.Tensor, past: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if fused and x.is_cuda:
            return self._fused(cat_channels([x, past]), x)
        return F.relu(self.conv(cat_channels([x, past])) + x)

    def _fused(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        first, _, second, _, third = self.conv
        h = conv_relu(first, h)
        h = conv_relu(second, h)
        return torch.cudnn_convolution_add_relu(h, third.weight, x, 1.0, third.bias, *geometry(third))


def geometry(conv: nn.Conv2d) -> tuple:
    """A conv's stride, padding, dilation and groups, as cuDNN's fused ops take them."""
    return conv.stride, conv.padding, conv.dilation, conv.groups


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``ReLU(conv(x))`` in one cuDNN call (CUDA): the ReLU runs in the convolution's epilogue."""
    return torch.cudnn_convolution_relu(x, conv.weight, conv.bias, *geometry(conv))


class TGrow(nn.Module):
    """1×1 conv to ``stride`` channel groups; group j becomes the j-th of ``stride`` frames."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        y = self.conv(x)
        if y.is_contiguous():
            return y.reshape(t * self.stride, c, h, w)
        return image_kernels.frames_from_channel_groups(y, self.stride)  # channels-last: a regrouping copy


class Upsample2x(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_contiguous():
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return image_kernels.upsample2x(x)  # channels-last (interpolate may answer in the other layout)


def lq_condition(lq: torch.Tensor, cfg: TCDecoderConfig) -> torch.Tensor:
    """LQ frames (B, 3, 4n, H, W) → (B, n, 768, H/8, W/8), channel ``c·256 + t·64 + dy·8 + dx``."""
    b, c, t, h, w = lq.shape
    ft, f = cfg.cond_frames, cfg.cond_factor
    x = lq.reshape(b, c, t // ft, ft, h // f, f, w // f, f)
    x = x.permute(0, 2, 1, 3, 5, 7, 4, 6)
    return x.reshape(b, t // ft, c * ft * f * f, h // f, w // f)


@dataclass(frozen=True)
class Pass:
    """How one decode call runs: ``chunk`` frames at a time at each new resolution (0: all),
    ``fused`` memory-block epilogues."""

    chunk: int = 0
    fused: bool = False


@dataclass
class TCDecoderMemory:
    """Per-stream state: each MemBlock's previous input, and frames still to trim."""

    past: dict[int, torch.Tensor] = field(default_factory=dict)
    frames_to_trim: int = 0


class TCDecoder(nn.Module):
    def __init__(self, cfg: TCDecoderConfig):
        super().__init__()
        self.cfg = cfg
        c0, c1, c2 = cfg.channels
        g0, g1, g2 = cfg.time_growth
        n = cfg.blocks_per_stage
        head = cfg.head_width
        self.skip_channels = cfg.image_channels if cfg.lq_skip else 0
        self.memory_channels = c2 if cfg.head_memory else 0
        self.decoder = nn.Sequential(
            Clamp(),
            conv3x3(cfg.cond_channels + cfg.latent_channels, c0), relu(),
            conv3x3(c0, c0, bias=False), relu(),
            *[MemBlock(c0) for _ in range(n)], Upsample2x(), TGrow(c0, g0),
            conv3x3(c0, c1, bias=False),
            *[MemBlock(c1) for _ in range(n)], Upsample2x(), TGrow(c1, g1),
            conv3x3(c1, c2, bias=False),
            *[MemBlock(c2) for _ in range(n)], Upsample2x(), TGrow(c2, g2),
            conv3x3(c2 + self.skip_channels + self.memory_channels, head, bias=False), relu(),
            conv3x3(head, head, bias=False), relu(),
            conv3x3(head, cfg.image_channels),
        )  # fmt: skip
        last_growth = max(i for i, layer in enumerate(self.decoder) if isinstance(layer, TGrow))
        self.skip_at = last_growth + 1  # the first full-resolution conv: reads the LQ frame (lq_skip), the past (head_memory)

    def forward(self, latents: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """Decode a whole clip from the start of a stream (training)."""
        return self.decode(self.start(), latents, lq)[0]

    def start(self) -> TCDecoderMemory:
        return TCDecoderMemory(frames_to_trim=self.cfg.frames_per_latent - 1)

    def decode(
        self,
        memory: TCDecoderMemory,
        latents: torch.Tensor,
        lq: torch.Tensor,
        frame_chunk: int = 0,
        channels_last: bool = False,
        fused: bool = False,
    ) -> tuple[torch.Tensor, TCDecoderMemory]:
        """Decode the next latent frames.

        latents (B, 16, n, h, w) and their LQ condition frames (B, 3, 4n, 8h, 8w) in [-1, 1]
        (the stream's first group padded at the front with copies of frame 0) →
        frames (B, 3, 4n − trimmed, 8h, 8w) in [-1, 1]. ``frame_chunk`` > 0 keeps at most that
        many frames at each new (upsampled) resolution at a time: the same result, with
        activation memory bounded at high resolution. ``channels_last`` runs every layer in that
        memory layout (the same values; on GPUs it spares cuDNN a layout conversion around each
        convolution, given weights in that layout too). ``fused`` runs the memory blocks with
        cuDNN's fused epilogues, and each other conv that a ReLU follows with the ReLU in its
        epilogue (CUDA; bf16 rounding differs, see :class:`MemBlock`).
        """
        b, _, n, h, w = latents.shape
        layout = torch.channels_last if channels_last else torch.contiguous_format
        cond = lq_condition(lq.to(latents.dtype), self.cfg)
        x = torch.cat([cond, latents.transpose(1, 2)], dim=2).flatten(0, 1).contiguous(memory_format=layout)
        past = dict(memory.past)
        skip = None
        if self.cfg.lq_skip:
            skip = lq.transpose(1, 2).to(latents.dtype).flatten(0, 1).contiguous(memory_format=layout)
            skip = skip.unflatten(0, (b, lq.shape[2]))
        x, t = self._run(x, 0, n, b, past, Pass(frame_chunk, fused), skip)
        trim = min(memory.frames_to_trim, t)
        out = x.unflatten(0, (b, t))[:, trim:].transpose(1, 2)
        # the output is [0, 1]; the residual form predicts a change to the LQ frame instead
        frames = lq[:, :, trim:].to(out.dtype) + 2 * out if self.cfg.residual else out * 2 - 1
        return frames, TCDecoderMemory(past=past, frames_to_trim=memory.frames_to_trim - trim)

    def grow_state(self, state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
        """A state dict of a narrower decoder of this family (without ``lq_skip`` or
        ``head_memory``, or with a narrower full-resolution head) made to fit this one,
        computing what it did before: new input channels (the LQ frame, the previous frame's
        features) start at zero; new head channels get random inputs at the old weights' scale
        and zero outputs, so they learn from the first step without changing the start."""
        state = dict(state)
        first, middle, last = (f"decoder.{i}.weight" for i in self.head_convs())
        if first not in state or last not in state:
            return state  # not this decoder's: load_state_dict says what differs
        c2, weight = self.cfg.channels[-1], state[first]
        if weight.shape[1] == c2 and self.skip_channels:  # inputs are [features, LQ frame, previous features]
            weight = _more_inputs(weight, self.skip_channels)
        if weight.shape[1] == c2 + self.skip_channels and self.memory_channels:
            weight = _more_inputs(weight, self.memory_channels)
        state[first] = weight
        added = self.cfg.head_width - weight.shape[0]
        if added > 0:
            gen = torch.Generator().manual_seed(seed)
            state[first] = _more_outputs(state[first], added, gen)
            state[middle] = _more_inputs(_more_outputs(state[middle], added, gen), added)
            state[last] = _more_inputs(state[last], added)
        return state

    def head_convs(self) -> tuple[int, int, int]:
        """Indices of the three full-resolution convs after the last temporal growth."""
        return self.skip_at, self.skip_at + 2, self.skip_at + 4

    def zero_last_layer(self) -> None:
        """Start a residual decoder as the identity on the LQ frames."""
        last = self.decoder[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)

    def _run(self, x, start: int, t: int, b: int, past: dict, how: Pass, skip) -> tuple[torch.Tensor, int]:
        """Layers ``start…`` on (b·t, C, H, W); memory blocks read and update ``past``. Each
        upsampling + temporal growth pair runs growth first, at the low resolution (a 1×1 conv
        commutes with nearest upsampling); with ``how.chunk``, the grown frames are then upsampled and
        carried on that many at a time, so at most that many frames exist at the new resolution.
        ``skip``: the LQ frames (b, frames out, 3, H, W) that these frames become, with ``lq_skip``."""
        i = start
        while i < len(self.decoder):
            layer = self.decoder[i]
            if i == self.skip_at:
                x = self._head_input(x, b, t, past, skip)
            if isinstance(layer, MemBlock):
                x = layer(x, _predecessors(x, b, t, past, i), fused=how.fused)
            elif how.fused and x.is_cuda and self._relu_follows(i):
                x = conv_relu(layer, x)
                i += 1
            elif isinstance(layer, Upsample2x):  # always followed by its TGrow
                grow = self.decoder[i + 1]
                x, t = grow(x), t * grow.stride
                if how.chunk and t > how.chunk:
                    return self._run_in_pieces(x, i, t, b, past, how, skip)
                x = layer(x)
                i += 1
            else:
                x = layer(x)
            i += 1
        return x, t

    def _relu_follows(self, i: int) -> bool:
        """Layer ``i`` is a conv whose output only a ReLU reads (fusable)."""
        layers = self.decoder
        return isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)

    def _head_input(self, x: torch.Tensor, b: int, t: int, past: dict, skip) -> torch.Tensor:
        """The first full-resolution conv's input: the frames' features, their LQ frames
        (``lq_skip``) and, with ``head_memory``, each frame's predecessor's features."""
        parts = [x]
        if skip is not None:
            parts.append(skip.flatten(0, 1))
        if self.memory_channels:
            parts.append(_predecessors(x, b, t, past, self.skip_at))
        return cat_channels(parts) if len(parts) > 1 else x

    def _run_in_pieces(
        self, x, upsample: int, t: int, b: int, past: dict, how: Pass, skip
    ) -> tuple[torch.Tensor, int]:
        """Grown low-resolution frames upsampled by layer ``upsample`` and run through the rest
        ``how.chunk`` at a time, in time order (``past`` carries over)."""
        chunk = how.chunk
        pieces = x.unflatten(0, (b, t)).split(chunk, dim=1)
        rest = upsample + 2  # after the upsampling and its growth
        growth = self._growth_from(rest)
        skips = skip.split(chunk * growth, dim=1) if skip is not None else [None] * len(pieces)
        outs = [
            self._run(self.decoder[upsample](p.flatten(0, 1)), rest, p.shape[1], b, past, how, s)
            for p, s in zip(pieces, skips)
        ]
        frames = torch.cat([o.unflatten(0, (b, n)) for o, n in outs], dim=1)
        return frames.flatten(0, 1), frames.shape[1]

    def _growth_from(self, start: int) -> int:
        """How many output frames each frame entering layer ``start`` becomes."""
        n = 1
        for layer in list(self.decoder)[start:]:
            if isinstance(layer, TGrow):
                n *= layer.stride
        return n


def _predecessors(x: torch.Tensor, b: int, t: int, past: dict, key: int) -> torch.Tensor:
    """Each of the (b·t, C, H, W) frames' predecessor in its stream: the frame before it, or for
    the first the last frame of the previous call (``past[key]``, zeros at the start), which
    is then replaced by this call's last frame. Keeps ``x``'s memory layout."""
    prev = past.get(key)
    if prev is None:
        prev = torch.zeros_like(x[:b])
    if t == 1:  # one frame per stream (the decoder's frame chunks): its predecessor is the past; nothing to copy
        past[key] = x
        return prev
    firsts = range(0, b * t, t)
    past[key] = torch.cat([x[i + t - 1 : i + t] for i in firsts])  # a copy: a view would keep all t frames alive
    parts = [part for j, i in enumerate(firsts) for part in (prev[j : j + 1], x[i : i + t - 1]) if len(part)]
    return torch.cat(parts)  # (empty parts left out: they would make cat forget the layout)


def _more_inputs(weight: torch.Tensor, n: int) -> torch.Tensor:
    """A conv weight with ``n`` more input channels that it ignores (zero)."""
    return torch.cat([weight, weight.new_zeros(weight.shape[0], n, *weight.shape[2:])], dim=1)


def _more_outputs(weight: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """A conv weight with ``n`` more output channels, random at the existing weights' scale."""
    extra = torch.randn(n, *weight.shape[1:], generator=gen).to(weight) * weight.std().item()
    return torch.cat([weight, extra], dim=0)
