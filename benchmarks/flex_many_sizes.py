"""One process, several output sizes in turn (as a UI server sees them): every size must run at
full speed with FlexAttention, i.e. without falling back after torch's recompile limit.

    python benchmarks/flex_many_sizes.py [--layers 4] [--recompile-limit 8  (torch's default: the failure)]
"""

from __future__ import annotations

import argparse
import json

from flashvsr.attention import backends
from flashvsr.bench import BenchConfig, run_bench

SIZES = [(768, 1408), (512, 896), (640, 1152), (768, 1024), (512, 512), (896, 1536)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--recompile-limit", type=int, default=backends.FLEX_RECOMPILE_LIMIT)
    args = ap.parse_args()
    backends.FLEX_RECOMPILE_LIMIT = args.recompile_limit
    for h, w in SIZES:
        try:
            r = run_bench(BenchConfig(height=h, width=w, frames=args.frames, layers=args.layers, warmup=1, repeats=1))
        except Exception as e:  # the failure being measured: report it and go on
            print(json.dumps({"size": f"{w}x{h}", "error": f"{type(e).__name__}: {str(e)[:200]}"}), flush=True)
            continue
        print(json.dumps({"size": f"{w}x{h}", "fps": round(r.fps, 2), "peak_gb": round(r.peak_memory_gb, 2),
                          "dit_ms_per_8": round(r.stage_ms_per_8_frames.get("dit", 0), 1)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
