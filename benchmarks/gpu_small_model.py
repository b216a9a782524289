"""Device check for the bundled model: the held-out crops of the data pack (bicubic ×4),
measured on the GPU in bfloat16 and float32 through the same engine as on the CPU.

    python benchmarks/gpu_small_model.py MODEL_DIR DATA_PACK OUT_DIR [DEVICE]

On ``cpu`` only float32 is measured (the CPU reference for the GPU rows).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.evaluation import EvalConfig, evaluate  # noqa: E402


def main(model: Path, pack: Path, out: Path, device: str) -> None:
    clips = sorted(p for p in (pack / "heldout").iterdir() if p.is_dir())
    base = EvalConfig(max_frames=25, device=device)
    for dtype in ("bfloat16", "float32") if device != "cpu" else ("float32",):
        report = evaluate(clips, ["bicubic", str(model)], replace(base, dtype=dtype), out / dtype)
        print(f"## {dtype}\n{report.markdown()}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "cuda")
