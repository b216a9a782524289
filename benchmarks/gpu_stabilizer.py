#!/usr/bin/env python3
"""Device check: the bundled model with its stabilizer gives the CPU's frames on the GPU.

    python benchmarks/gpu_stabilizer.py [OUT.json]

The demo's rendered scene (no PyAV needed), shrunk ×4, upscaled on the CPU in float32 and on
CUDA in float32 and bfloat16, stabilizer on ("auto": the model folder recommends it) and off;
prints the PSNR of each GPU output against the CPU float32 one, and the mean frame-to-frame change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
try:
    import av  # noqa: F401  (flashvsr.demo writes its clips with it; only the rendering is used here)
except ImportError:  # the device has no PyAV
    sys.modules["av"] = type(sys)("av")
from flashvsr.demo import DemoConfig, render_scene, shrink  # noqa: E402
from flashvsr.pipeline import Upscaler  # noqa: E402


def upscale(lr: np.ndarray, device: str, dtype: str, stabilize: str) -> np.ndarray:
    up = Upscaler.load(None, device=device, dtype=dtype, stabilize=stabilize)
    return np.stack(list(up.stream(list(lr), scale=4, batch=8))).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main(out: Path | None) -> None:
    lr = shrink(render_scene(DemoConfig()))
    rows = []
    for stabilize in ("auto", "off"):
        cpu = upscale(lr, "cpu", "float32", stabilize)
        for dtype in ("float32", "bfloat16"):
            gpu = upscale(lr, "cuda", dtype, stabilize)
            row = {"stabilize": stabilize, "dtype": dtype, "frames": len(gpu), "psnr_vs_cpu": psnr(gpu, cpu),
                   "max_abs": float(np.abs(gpu - cpu).max()),
                   "change_gpu": float(np.abs(np.diff(gpu, axis=0)).mean()),
                   "change_cpu": float(np.abs(np.diff(cpu, axis=0)).mean())}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    if out:
        out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
