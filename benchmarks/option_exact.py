#!/usr/bin/env python3
"""On the GPU: an engine speed option (cuda_graphs, decoder_channels_last, overlap_decode)
against the frames made without it.

    python benchmarks/option_exact.py cuda_graphs [--layers 6 --height 512 --width 768 --frames 61] [--compile]

Official-width random models (as `flashvsr bench`), one stream with the option off, one with
it on (the same models and input): prints whether every output value is equal (else the
largest difference, in output units of [-1, 1]), how many DiT calls were captured as CUDA
graphs, and one JSON line. 61 frames make 6 calls: with graphs, calls 2 onward replay.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import random_official_models, synthetic_lr_video  # noqa: E402
from flashvsr.engine.overlap import running_on  # noqa: E402
from flashvsr.engine.stream import StreamingEngine  # noqa: E402
from flashvsr.pipeline import Upscaler, engine_config, plan_geometry, prepare_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offload_exact import add_small_case_arguments  # noqa: E402


EXACT_OPTIONS = ["cuda_graphs", "decoder_channels_last", "overlap_decode"]


def stream(engine: StreamingEngine, lr: torch.Tensor, height: int, width: int):
    geo = plan_geometry(lr.shape[1], lr.shape[2], width=width, height=height)
    state = engine.start(geo.model_h, geo.model_w, content=geo.content)
    frames = prepare_frames(lr.cuda(), geo, engine.dtype)
    pushes = [engine.push(state, frames[i : i + 8]) for i in range(0, len(frames), 8)]  # calls one by one
    out = torch.cat([*pushes, engine.finish(state)])
    return out, len(state.graphs.captured)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("option", choices=EXACT_OPTIONS)
    add_small_case_arguments(ap, frames=61)
    ap.add_argument("--attention-backend", default="auto")
    args = ap.parse_args()
    models = random_official_models(args.layers, "tiny", "cuda")
    lr = synthetic_lr_video(args.frames, args.height // 4, args.width // 4)
    outs = {}
    with torch.no_grad():
        for on in (False, True):
            options = {**{name: False for name in EXACT_OPTIONS}, args.option: on}
            cfg = engine_config("tiny", "cuda", "bfloat16", compile=args.compile, offload_weights="off",
                                attention_backend=args.attention_backend, **options)  # fmt: skip
            upscaler = Upscaler(models, cfg)
            with running_on(upscaler.first_stream):  # as Upscaler.stream runs it (overlap_decode: its own stream)
                outs[on] = stream(upscaler.engine, lr, args.height, args.width)
    (eager, _), (replayed, captured) = outs[False], outs[True]
    diff = (eager.float() - replayed.float()).abs().max().item()
    report = {"option": args.option, "layers": args.layers, "size": [args.width, args.height], "frames": args.frames,
              "compile": args.compile, "attention_backend": args.attention_backend, "output_frames": eager.shape[0],
              "captured_graphs": captured,
              "identical": bool(torch.equal(eager, replayed)), "max_abs_difference": diff}  # fmt: skip
    print(f"{args.option}: {args.layers} layers, {args.width}×{args.height}, {args.frames} frames, compile {args.compile}: "
          f"{captured} graphs captured; identical {report['identical']} (max |Δ| {diff:.3g})")
    print(json.dumps(report))
    return 0 if report["identical"] or args.option == "decoder_channels_last" else 1


if __name__ == "__main__":
    sys.exit(main())
