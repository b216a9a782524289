#!/usr/bin/env python3
"""Run ``flashvsr bench`` (flashvsr.bench.run_bench) for several option sets in one process
and write one JSON line per run: how each speed option changes FPS, stage times and memory.

    python benchmarks/bench_variants.py OUT.jsonl base compile \\
        [--height 768 --width 1408 --frames 101]

A variant is a '+'-joined list of BenchConfig boolean fields to switch on ("base": none).
Works without PyAV (the CLI's video commands need it; timing does not).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.bench import BenchConfig, run_bench  # noqa: E402

SWITCHES = {f.name for f in fields(BenchConfig) if f.type in (bool, "bool")}


def config_for(variant: str, args) -> BenchConfig:
    names = [] if variant == "base" else variant.split("+")
    unknown = set(names) - SWITCHES
    if unknown:
        raise SystemExit(f"unknown switches {sorted(unknown)}; choose from {sorted(SWITCHES)}")
    return BenchConfig(height=args.height, width=args.width, frames=args.frames, repeats=args.repeats,
                       device=args.device, layers=args.layers, **{name: True for name in names})  # fmt: skip


def main() -> int:
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
    with args.out.open("a") as sink:
        for variant in args.variants:
            result = run_bench(config_for(variant, args))
            print(f"== {variant}\n{result.table()}", flush=True)
            sink.write(json.dumps({"variant": variant, **json.loads(result.to_json())}) + "\n")
            sink.flush()
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
