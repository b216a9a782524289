"""The ``flashvsr`` command line: upscale, bench (and more subcommands as they land)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__


def _bench(args: argparse.Namespace) -> int:
    from .bench import BenchConfig, run_bench

    cfg = BenchConfig(
        height=args.height,
        width=args.width,
        frames=args.frames,
        variant=args.variant,
        dtype=args.dtype,
        device=args.device,
        sparse_ratio=args.sparse_ratio,
        local_range=args.local_range,
        kv_ratio=args.kv_ratio,
        layers=args.layers,
        warmup=args.warmup,
        repeats=args.repeats,
        attention_backend=args.attention_backend,
    )
    result = run_bench(cfg)
    print(result.table())
    if args.json:
        Path(args.json).write_text(result.to_json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flashvsr", description="One-step streaming video super-resolution.")
    parser.add_argument("--version", action="version", version=f"flashvsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="time the streaming pipeline on a GPU (random official-size weights)")
    bench.add_argument("--height", type=int, default=768, help="output height (default 768)")
    bench.add_argument("--width", type=int, default=1408, help="output width (default 1408)")
    bench.add_argument("--frames", type=int, default=101, help="frames to upscale (default 101)")
    bench.add_argument("--variant", choices=["tiny", "full"], default="tiny", help="TC decoder or Wan VAE decoder")
    bench.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    bench.add_argument("--device", default="cuda")
    bench.add_argument("--sparse-ratio", type=float, default=2.0, help="LCSA sparsity (reference 2.0; 1.5 faster)")
    bench.add_argument("--local-range", type=int, default=11, help="LCSA local window in windows (default 11)")
    bench.add_argument("--kv-ratio", type=float, default=3.0, help="cached time slices (default 3)")
    bench.add_argument("--layers", type=int, default=30, help="DiT blocks (default 30, the official size)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed passes first (compilation)")
    bench.add_argument("--repeats", type=int, default=2, help="timed passes; the median is reported")
    bench.add_argument("--attention-backend", default="auto", choices=["auto", "flex", "gather", "dense"])
    bench.add_argument("--json", help="also write the result as JSON to this file")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
