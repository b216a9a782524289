#!/usr/bin/env python3
"""Run ``flashvsr bench`` (flashvsr.bench.run_bench) for several option sets in one process
and write one JSON line per run: how each speed option changes FPS, stage times and memory.

    python benchmarks/bench_variants.py OUT.jsonl base compile \\
        [--height 768 --width 1408 --frames 101]

A variant is a '+'-joined list of BenchConfig fields: a boolean's name switches it on, and
``name=value`` sets any other ("base": none), e.g. ``memory_limit_gb=6+kv_cache=fp8``.
More words are not BenchConfig fields, for A/Bs in one process: ``torch_kernels`` runs torch's
ops where this project's Triton kernels (flashvsr/kernels/) would run, and ``torch_NAME`` only
where kernel NAME would (e.g. ``torch_rms_norm_rope``); ``two_parts`` gives the attention kernel
a layer's ring and the call's windows as two parts merged by log-sum-exp, as before the KV pool's
single call; ``cudnn_benchmark`` lets cuDNN time its algorithms for each new conv shape
(``torch.backends.cudnn.benchmark``) instead of choosing by heuristics; ``eager_edges`` keeps the
frame conversions (prepare, uint8) and the colour fix eager under ``compile``.
Works without PyAV (the CLI's video commands need it; timing does not).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from dataclasses import fields
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr import kernels  # noqa: E402
from flashvsr.attention import backends  # noqa: E402
from flashvsr.bench import BenchConfig, run_bench  # noqa: E402
from flashvsr.cli import ALLOCATOR_SETTINGS  # noqa: E402
from flashvsr.colorfix import color_fix  # noqa: E402
from flashvsr.engine.stream import StreamingEngine  # noqa: E402
from flashvsr.pipeline import FrameConversions  # noqa: E402

SWITCHES = {f.name for f in fields(BenchConfig) if f.type in (bool, "bool", "bool | None")}  # None: decided by others
SETTINGS = {f.name: f.default for f in fields(BenchConfig)}


def parse_setting(word: str) -> tuple[str, object]:
    """``name`` (a boolean switched on) or ``name=value`` (parsed as the field's default is)."""
    name, _, value = word.partition("=")
    if name not in SETTINGS or (not value and name not in SWITCHES):
        raise SystemExit(f"unknown setting {word!r}; switches: {sorted(SWITCHES)}, settings: {sorted(SETTINGS)}")
    if not value:
        return name, True
    default = SETTINGS[name]
    if isinstance(default, bool) or name in SWITCHES:
        return name, value.lower() in ("1", "true", "yes")
    return name, type(default)(value)


TORCH_KERNELS, TWO_PARTS, CUDNN_BENCHMARK, EAGER_EDGES = "torch_kernels", "two_parts", "cudnn_benchmark", "eager_edges"


def _is_path_word(word: str) -> bool:
    return word in (TORCH_KERNELS, TWO_PARTS, CUDNN_BENCHMARK, EAGER_EDGES) or word.startswith("torch_")


def edges_as_words_say(variant: str) -> contextlib.AbstractContextManager:
    """With ``eager_edges``, engines and upscalers built inside keep the conversions and colour fix eager."""
    if EAGER_EDGES not in variant.split("+"):
        return contextlib.nullcontext()
    speed_up = StreamingEngine._speed_up

    def eager_colour_fix(engine, models, config):
        speed_up(engine, models, config)
        engine.color_fixer = color_fix

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(StreamingEngine, "_speed_up", eager_colour_fix))
    eager_conversions = staticmethod(lambda device, compile: FrameConversions())
    stack.enter_context(mock.patch.object(FrameConversions, "build", eager_conversions))
    return stack


def use_paths(variant: str, triton_installed: bool) -> set[str]:
    """Switch this project's kernels and the pool's single call as the variant's words say; returns
    the kernels it turned off, to turn back on after the variant (those its checks failed stay off)."""
    words = variant.split("+")
    kernels.HAVE_TRITON = triton_installed and TORCH_KERNELS not in words
    named = {w.removeprefix("torch_") for w in words if w.startswith("torch_") and w != TORCH_KERNELS}
    added = named - kernels.turned_off
    kernels.turned_off.update(added)
    for kernel in (backends.flash4_block_sparse, backends.gather_block_sparse):
        kernel.takes_columns = TWO_PARTS not in words
    torch.backends.cudnn.benchmark = CUDNN_BENCHMARK in words
    return added


def config_for(variant: str, args) -> BenchConfig:
    words = [w for w in ([] if variant == "base" else variant.split("+")) if not _is_path_word(w)]
    settings = dict(parse_setting(word) for word in words)
    return BenchConfig(height=args.height, width=args.width, frames=args.frames, repeats=args.repeats,
                       device=args.device, layers=args.layers, **settings)  # fmt: skip


def release_models() -> None:
    """Free the last variant's models before the next one: compiled code holds on to them, which made every
    variant after the first report their memory too."""
    torch._dynamo.reset()
    gc.collect()
    torch.cuda.empty_cache()


def main() -> int:
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOCATOR_SETTINGS)  # as the CLI does
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("variants", nargs="+")
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--width", type=int, default=1408)
    p.add_argument("--frames", type=int, default=101)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    triton_installed = kernels.HAVE_TRITON
    with args.out.open("a") as sink:
        for variant in args.variants:
            added = use_paths(variant, triton_installed)
            with edges_as_words_say(variant):
                result = run_bench(config_for(variant, args))
            kernels.turned_off.difference_update(added)
            print(f"== {variant}\n{result.table()}", flush=True)
            sink.write(json.dumps({"variant": variant, **json.loads(result.to_json())}) + "\n")
            sink.flush()
            release_models()
    return 0


if __name__ == "__main__":
    sys.exit(main())
