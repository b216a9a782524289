"""Device probe (issue 4): the official-size TC decoder's steady-state call (2 latents → 8
frames, channels-last bf16, one frame at a time at full resolution, as the engine runs it) with
its memory blocks' ReLUs and residual add fused into cuDNN convolutions (``decode(fused=True)``,
what ``--compile`` runs), or the blocks compiled by torch.compile instead, against eager.

    python benchmarks/decoder_fusion.py [--height 768 --width 1408 --iters 10] [--json OUT.jsonl]

Prints ms per call (CUDA events, median) and the largest difference from the eager output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import fill_random  # noqa: E402
from flashvsr.config import TCDecoderConfig  # noqa: E402
from flashvsr.models.tc_decoder import MemBlock, TCDecoder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flex_options import time_ms  # noqa: E402


def compile_blocks(decoder: TCDecoder) -> None:
    for block in decoder.modules():
        if isinstance(block, MemBlock):
            block.forward = torch.compile(block.forward, dynamic=False)


def timed_calls(decoder, memory, latents, lq, iters: int, fused: bool) -> tuple[float, torch.Tensor]:
    run = lambda: decoder.decode(memory, latents, lq, frame_chunk=1, channels_last=True, fused=fused)  # noqa: E731
    out, _ = run()  # warm-up (and compile)
    return time_ms(run, iters), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1408)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device, dtype = torch.device("cuda"), torch.bfloat16
    torch.backends.cudnn.benchmark = True
    gen = torch.Generator(device=device).manual_seed(0)
    h, w = args.height // 8, args.width // 8
    latents = torch.randn(1, 16, 2, h, w, generator=gen, device=device, dtype=dtype)
    lq = torch.rand(1, 3, 8, args.height, args.width, generator=gen, device=device, dtype=dtype) * 2 - 1
    rows, reference = [], None
    for variant in ("eager", "cudnn_fused", "compiled_blocks"):
        decoder = fill_random(TCDecoder(TCDecoderConfig()), 0, device).to(dtype).to(memory_format=torch.channels_last)
        if variant == "compiled_blocks":
            compile_blocks(decoder)
        fused = variant == "cudnn_fused"
        with torch.no_grad():
            _, memory = decoder.decode(decoder.start(), latents, lq, frame_chunk=1, channels_last=True)  # steady state
            ms, out = timed_calls(decoder, memory, latents, lq, args.iters, fused)
        reference = out if reference is None else reference
        diff = (out.float() - reference.float()).abs()
        row = {"variant": variant, "ms_per_call": round(ms, 2), "frames": out.shape[2],
               "max_abs_diff": diff.max().item(), "mean_abs_diff": diff.mean().item(),
               "peak_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
        del decoder
        torch.cuda.reset_peak_memory_stats()
    if args.json:
        args.json.write_text("".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main()
