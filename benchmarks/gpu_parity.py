"""Device check for issue 2: the FlexAttention backend against the CPU kernels and fixtures.

    python benchmarks/gpu_parity.py FIXTURE_PARITY_DIR [--out results.json]

For each fixture case: flex in float32 and bf16 against the reference, and flex against the
gather kernel (the CPU default) on the same device and dtype — masks and latents.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flashvsr.parity import build_fixture_models, relative_error, run_parity_case  # noqa: E402


def mask_agreement(a: dict, b: dict) -> float:
    same = sum((a[k] == b[k]).sum().item() for k in a)
    return same / sum(a[k].numel() for k in a)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--out")
    ap.add_argument("--speed", action="store_true", help="also bf16 flex with the DiT blocks under torch.compile")
    ap.add_argument("--also", nargs="*", default=[], metavar="DTYPE/BACKEND",
                    help="more runs, e.g. bfloat16/flash4 bfloat16/flash4+compile+overlap_decode")
    args = ap.parse_args()
    configs = [("float32", "flex"), ("bfloat16", "flex"), ("bfloat16", "gather"), ("float32", "gather")]
    configs += [("bfloat16", "flex+compile")] if args.speed else []
    configs += [tuple(run.split("/", 1)) for run in args.also]
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": {}}
    for folder in sorted(p for p in Path(args.root).iterdir() if (p / "meta.json").is_file()):
        runs = {}
        built = build_fixture_models(json.loads((folder / "meta.json").read_text()))
        for dtype, backend in configs:
            # float32 means float32: no TF32 in matmuls or cuDNN convolutions (on by default for convs)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = dtype != "float32"
            models = copy.deepcopy(built)
            kernel, *speed = backend.split("+")
            r = runs[(dtype, backend)] = run_parity_case(folder, "cuda", dtype, kernel, models=models,
                                                         **{option: True for option in speed})  # fmt: skip
            print(f"{folder.name} {dtype:9s} {backend:6s} latents rel {r.latent_rel:.2e}  masks differ "
                  f"{max(r.mask_mismatch.values()):.3%}  output rel {r.frames_rel['output']:.2e}  "
                  f"failures: {r.failures() or 'none'}", flush=True)
        case = {f"{d}/{b}": {"latent_rel_vs_reference": r.latent_rel, "mask_mismatch_vs_reference": r.mask_mismatch,
                             "frames_rel_vs_reference": r.frames_rel, "frames_abs_vs_reference": r.frames_abs}
                for (d, b), r in runs.items()}
        for dtype in ("float32", "bfloat16"):
            flex, gather = runs[(dtype, "flex")], runs[(dtype, "gather")]
            n = min(flex.latents.shape[2], gather.latents.shape[2])
            case[f"flex_vs_gather/{dtype}"] = {
                "mask_agreement": mask_agreement(flex.masks, gather.masks),
                "latent_rel": relative_error(flex.latents[:, :, :n], gather.latents[:, :, :n]),
            }
            print(f"{folder.name} flex vs gather {dtype}: {case[f'flex_vs_gather/{dtype}']}", flush=True)
        report["cases"][folder.name] = case
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
