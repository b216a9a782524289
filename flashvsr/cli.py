"""The ``flashvsr`` command line: upscale, demo, eval, probe, ui, bench, train, data.

Errors are caught here, at the edge, and printed as one line on stderr with a non-zero exit
status: 2 for a bad command line, 1 for a bad input or a failed job, 128 + N when signal N
interrupted the run. Heavy imports (torch, PyAV) happen inside the subcommands, so ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from fractions import Fraction
from pathlib import Path

from . import __version__
from .config import (  # plain dataclasses: no torch
    DEFAULT_DECODER_FRAME_CHUNK, DEFAULT_TILE_OVERLAP, LINEAR_FORMATS, OFFLOAD_WEIGHTS_MODES, PIXEL_MULTIPLE,
    STABILIZE_MODES, TILE_AUTO, TILE_OFF,
)  # fmt: skip

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DEBUG_ENV = "FLASHVSR_DEBUG"  # set it to see tracebacks of unexpected errors

UPSCALE_DESCRIPTION = """\
Upscale videos, images and folders of images with FlashVSR, streaming frame by frame
(memory does not grow with the video's length).

The output has exactly as many frames as the input, at exactly --scale times its size
(rounded up to even numbers for H.264/H.265/ProRes), with the input's timestamps (exact and
variable frame rates kept), every audio stream copied, and the input's colour matrix, range,
primaries and transfer. Rotated videos (phone portrait clips) are turned upright.

OUTPUT is written under a hidden temporary name and renamed only when it is complete: an
interrupted or failed run leaves nothing under OUTPUT.

  one input:  OUTPUT ending in .mp4/.mkv/.mov/.m4v  → a video
              OUTPUT ending in .png/.jpg/.webp/.tif/.bmp → an image (one-frame inputs)
              any other OUTPUT                       → a folder of images (--format)
  several inputs, or a folder of videos: OUTPUT is a folder, one output per input, same names.
  a folder of images is one image sequence (natural order: frame2 before frame10).

examples:
  flashvsr upscale clip.mp4 -o clip_x4.mp4
  flashvsr upscale clip.mp4 -o clip_x2.mov --scale 2 --codec prores
  flashvsr upscale frames/ -o frames_x4/ --format png
  flashvsr upscale photo.jpg -o photo_x4.png
  flashvsr upscale videos/ -o upscaled/ --width 1920 --weights FlashVSR-v1.1
"""


class UsageError(Exception):
    """A bad command line (printed as one line, exit status 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line gives one line on stderr instead of usage + error."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


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
        kv_cache=args.kv_cache,
        linears=args.linears,
        layers=args.layers,
        warmup=args.warmup,
        repeats=args.repeats,
        attention_backend=args.attention_backend,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        overlap_decode=args.overlap_decode,
        file_io=args.file_io,
        stabilize=args.stabilize,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        offload_tiles=args.offload_tiles,
        memory_limit_gb=args.memory_limit,
        decoder_frame_chunk=args.decoder_chunk,
        offload_weights=args.offload_weights,
    )
    result = run_bench(cfg)
    print(result.table())
    if args.json:
        Path(args.json).write_text(result.to_json())
    return 0


# --------------------------------------------------------------------------------------------
# flashvsr upscale


def _upscale(args: argparse.Namespace) -> int:
    from .jobs import OutputSettings, SizeRequest, plan_jobs

    size = SizeRequest(args.scale, args.width, args.height)
    settings = OutputSettings(
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        image_format=args.format,
        quality=args.quality,
        fps=args.fps,
        overwrite=args.overwrite,
    )
    jobs = plan_jobs(args.inputs, args.output, size, settings)  # every input checked before the model loads
    upscaler = _load_upscaler(args)
    if not args.quiet:
        print(upscaler.report.summary(), file=sys.stderr)
    return _run_jobs(upscaler, jobs, args.quiet)


def _load_upscaler(args: argparse.Namespace):
    import torch

    from .pipeline import Upscaler

    if args.device is not None:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise ValueError(f"--device {args.device!r} is not a device (cpu, cuda, cuda:1…)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    return Upscaler.load(
        args.weights,
        release=args.release,
        variant=args.variant,
        device=args.device,
        dtype=args.dtype,
        prompt=args.prompt,
        sparse_ratio=args.sparse_ratio,
        local_range=args.local_range,
        kv_ratio=args.kv_ratio,
        kv_cache=args.kv_cache,
        linears=args.linears,
        color_fix=args.color_fix,
        stabilize=args.stabilize,
        seed=args.seed,
        attention_backend=args.attention_backend,
        compile=args.compile,
        cuda_graphs=args.cuda_graphs,
        overlap_decode=args.overlap_decode,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        offload_tiles=args.offload_tiles,
        memory_limit_gb=args.memory_limit,
        decoder_frame_chunk=args.decoder_chunk,
        offload_weights=args.offload_weights,
    )


def _run_jobs(upscaler, jobs, quiet: bool) -> int:
    """Run every job; in a batch a failed input is reported and the others still run."""
    from .io.atomic import interrupt_on_signals

    failed, known_errors = 0, _known_errors()
    with interrupt_on_signals():
        for job in jobs:
            try:
                result = _run_with_progress(upscaler, job, quiet)
            except known_errors as e:
                if len(jobs) == 1:
                    raise
                print(f"flashvsr: error: {_one_line(e)}", file=sys.stderr)
                failed += 1
                continue
            for warning in result.warnings:
                print(f"flashvsr: warning: {warning}", file=sys.stderr)
            if not quiet:
                print(result.summary(), flush=True)
    return EXIT_FAILED if failed else 0


def _run_with_progress(upscaler, job, quiet: bool):
    from tqdm import tqdm

    from .jobs import run_job

    if not quiet:  # one line per job: which tiling the memory planner chose
        upscaler.announce = lambda line: tqdm.write(f"flashvsr: {line}", file=sys.stderr)
    with tqdm(total=job.input.frames, unit="frame", desc=job.input.path.name, disable=quiet,
              dynamic_ncols=True, file=sys.stderr) as bar:  # fmt: skip

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return run_job(upscaler, job, progress=progress)


def _probe(args: argparse.Namespace) -> int:
    from .io import probe

    for path in args.paths:
        info = probe(path)
        print(f"{info.summary()}; time base {info.time_base}, colour {info.color.describe()}")
    return 0


# --------------------------------------------------------------------------------------------
# flashvsr ui

UI_EXTRA_HINT = 'pip install "flashvsr[ui]"  (in a checkout: pip install -e ".[ui]")'
UI_PACKAGES = frozenset({"fastapi", "uvicorn", "starlette", "pydantic", "anyio"})  # the optional [ui] extra


def _ui(args: argparse.Namespace) -> int:
    try:
        from .ui.server import serve
    except ImportError as e:
        if (e.name or "").split(".")[0] not in UI_PACKAGES:
            raise
        print(f"flashvsr: error: flashvsr ui needs the web UI dependencies ({e.name} is missing): {UI_EXTRA_HINT}",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    from .ui.config import MIB, UIConfig

    config = UIConfig(
        host=args.host,
        port=args.port,
        weights=tuple(Path(w).expanduser() for w in args.weights),
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        max_upload_bytes=args.max_upload_mb * MIB,
        max_duration_s=args.max_duration,
        temp_parent=Path(args.temp_dir) if args.temp_dir else None,
    )
    try:
        serve(config, open_browser=args.open)
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        pass  # uvicorn re-raises the signal after its shutdown, except when it came during start-up
    print("flashvsr ui: stopped; its temporary files were removed", file=sys.stderr)
    return 0


UI_DESCRIPTION = """\
A local web app: upload videos or images, choose the model and settings, see each input's
properties and output size before starting, follow progress, cancel, download the results and
compare before/after. Jobs run one at a time and the model stays loaded between them. The page
uses the same HTTP API that scripts can call (see the README: "Web UI").

Uploads and outputs live in a temporary folder that is removed when the server stops.
By default it listens on 127.0.0.1 (this machine only): the UI has no login.

examples:
  flashvsr ui                                   # http://127.0.0.1:7860/ with the bundled model
  flashvsr ui --weights FlashVSR-v1.1 --open    # offer the official v1.1 weights; open a browser
  flashvsr ui --port 0 --max-upload-mb 500 --max-duration 120
"""


def _add_ui_parser(sub) -> None:
    from .ui.config import DEFAULT_HOST, DEFAULT_MAX_DURATION_S, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT

    p = sub.add_parser("ui", help="a local web app for upscaling (and its HTTP API)", description=UI_DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"interface to listen on (default {DEFAULT_HOST}, this machine only); 0.0.0.0 exposes the "
                        f"UI to your network, which it does not protect with a login: a warning is printed")  # fmt: skip
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--weights", action="append", default=[], metavar="DIR",
                   help="a model folder to offer (official v1 / v1.1 or a FlashVSR model folder); repeat for "
                        "several; the first is the default (default: the bundled model)")  # fmt: skip
    p.add_argument("--device", help="torch device: cuda, cuda:1, cpu (default: cuda if available, else cpu)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                   help="compute precision (default: bfloat16 on GPU, float32 on CPU)")  # fmt: skip
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--max-upload-mb", type=positive_int, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MiB (default {DEFAULT_MAX_UPLOAD_MB})")  # fmt: skip
    p.add_argument("--max-duration", type=positive_float, default=DEFAULT_MAX_DURATION_S, metavar="SECONDS",
                   help=f"longest accepted video in seconds (default {DEFAULT_MAX_DURATION_S:g})")  # fmt: skip
    p.add_argument("--temp-dir", metavar="DIR",
                   help="where the server's temporary folder is made (default: the system's temporary folder)")  # fmt: skip
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.set_defaults(func=_ui)


# --------------------------------------------------------------------------------------------
# Argument types: each turns a bad value into a one-line usage error


def scale_factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 1 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r}: the scale must be a number ≥ 1 (e.g. 2, 3.5, 4)")
    return value


def crop_size(text: str) -> tuple[int, int]:
    """``WxH`` → (height, width)."""
    w, sep, h = text.lower().partition("x")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 512x320")
    return positive_int(h), positive_int(w)


def tile_setting(text: str) -> str | tuple[int, int]:
    """``auto``, ``off`` or ``WxH`` in model pixels (multiples of 128) → (height, width)."""
    if text.lower() in (TILE_AUTO, TILE_OFF):
        return text.lower()
    size = crop_size(text)
    if any(v % PIXEL_MULTIPLE for v in size):
        raise argparse.ArgumentTypeError(f"{text!r}: tile sides must be multiples of {PIXEL_MULTIPLE}, e.g. 768x512")
    return size


OVERLAP_DECODE_HELP = ("on a GPU, decode each DiT call's frames on a second CUDA stream while the next call runs, and "
                       "copy the attention's keys and values on a third, each layer's once, into a free slot of the "
                       "cache (the same frames, 8 frames later; ~5 %% faster on an H100; a little more GPU memory)")


def tile_overlap(text: str) -> int:
    value = whole_number(text)
    if value < 0 or value % PIXEL_MULTIPLE:
        raise argparse.ArgumentTypeError(f"{text!r}: the overlap must be a multiple of {PIXEL_MULTIPLE} (0, 128, 256…)")
    return value


def _add_tiling_options(group) -> None:
    group.add_argument("--tile", type=tile_setting, default=TILE_AUTO, metavar="auto|off|WxH",
                       help="split large frames into overlapping tiles, blended at the seams: auto (default: only when "
                            "the frame does not fit in free GPU memory), off, or a tile size such as 1024x768 "
                            "(multiples of 128)")  # fmt: skip
    group.add_argument("--tile-overlap", type=tile_overlap, default=DEFAULT_TILE_OVERLAP, metavar="PIXELS",
                       help=f"pixels shared by neighbouring tiles, a multiple of {PIXEL_MULTIPLE} "
                            f"(default {DEFAULT_TILE_OVERLAP})")  # fmt: skip
    group.add_argument("--offload-tiles", action="store_true",
                       help="keep idle tiles' caches in host memory (GPU holds one tile at a time; slower, needs "
                            "host RAM); auto tiling turns it on by itself when needed")  # fmt: skip
    group.add_argument("--decoder-chunk", type=positive_int, default=DEFAULT_DECODER_FRAME_CHUNK, metavar="FRAMES",
                       help=f"TC decoder frames at a time at full resolution (default {DEFAULT_DECODER_FRAME_CHUNK}; "
                            "2 is ≈2 %% faster and needs ≈1.3 GB more at 1408×768; exact either way)")  # fmt: skip
    group.add_argument("--offload-weights", choices=OFFLOAD_WEIGHTS_MODES, default="auto",
                       help="keep the DiT's weights in host memory and stream them to the GPU block by block "
                            "(≈ 2.6 GB less for the official model, the same outputs; the copies overlap the compute): "
                            "auto (default: only when a frame would not fit otherwise, before tiling), on, off")  # fmt: skip
    group.add_argument("--memory-limit", type=positive_float, default=0.0, metavar="GB",
                       help="use at most this much GPU memory in all, weights included (plan and enforce, as on a "
                            "smaller card; default: what is free)")  # fmt: skip


def whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def frame_rate(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate (e.g. 30, 29.97, 30000/1001)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _add_upscale_parser(sub) -> None:
    from .io.images import DEFAULT_QUALITY, DEFAULT_SEQUENCE_FPS, IMAGE_FORMATS
    from .io.video import DEFAULT_CODEC, DEFAULT_PRESET, VIDEO_CODECS, X264_PRESETS

    p = sub.add_parser(
        "upscale",
        help="upscale videos, images or folders of images",
        description=UPSCALE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files (anything FFmpeg reads), image files, folders of images (one sequence) "
                        "or folders of videos (a batch)")  # fmt: skip
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="video file, image file or folder (see above); a folder for several inputs")  # fmt: skip

    size = p.add_argument_group("output size (default: --scale 4)")
    size.add_argument("--scale", type=scale_factor, help="upscaling factor, any number ≥ 1: 2, 3.5, 4…")
    size.add_argument("--width", type=positive_int, help="output width in pixels (the height keeps the aspect ratio unless given)")
    size.add_argument("--height", type=positive_int, help="output height in pixels (the width keeps the aspect ratio unless given)")

    model = p.add_argument_group("model")
    model.add_argument("--weights", metavar="DIR",
                       help="official FlashVSR v1 / v1.1 folder or a FlashVSR model folder (default: the bundled model)")  # fmt: skip
    model.add_argument("--release", choices=["v1", "v1.1"],
                       help="release of official weights, when the folder name does not say it (mixing them gives ghosting)")  # fmt: skip
    model.add_argument("--variant", choices=["tiny", "full"], default="tiny",
                       help="decoder: tiny = TC decoder (fast, default), full = Wan VAE (about 7× slower, sharper)")  # fmt: skip
    model.add_argument("--prompt", metavar="PATH",
                       help="posi_prompt.pth for official folders that do not hold it (default: DIR/posi_prompt.pth)")  # fmt: skip
    model.add_argument("--device", help="torch device: cuda, cuda:1, cpu (default: cuda if available, else cpu)")
    model.add_argument("--dtype", choices=["bfloat16", "float16", "float32"],
                       help="compute precision (default: bfloat16 on GPU, float32 on CPU)")  # fmt: skip

    tuning = p.add_argument_group("quality and speed (defaults are the reference's)")
    tuning.add_argument("--sparse-ratio", type=positive_float, default=2.0,
                        help="sparse attention budget: 2.0 (default, reference) or 1.5 (faster, slightly softer)")  # fmt: skip
    tuning.add_argument("--local-range", type=positive_int, default=11,
                        help="local attention window in 128-pixel blocks: 11 (default, more stable) or 9 (sharper)")  # fmt: skip
    tuning.add_argument("--kv-cache", choices=["model", "fp8"], default="model",
                        help="attention cache format: model (default, exact) or fp8 (half the cache memory; lossy)")  # fmt: skip
    tuning.add_argument("--linears", choices=LINEAR_FORMATS, default="model",
                        help="the DiT's linear layers: model (default, exact) or fp8 (FP8 tensor cores of Ada/Hopper GPUs: "
                             "faster, half their weights' memory; lossy)")  # fmt: skip
    tuning.add_argument("--kv-ratio", type=positive_float, default=3.0,
                        help="time slices kept in the attention cache: 3 (default); fewer uses less memory")  # fmt: skip
    tuning.add_argument("--color-fix", choices=["adain", "wavelet", "none"], default="adain",
                        help="match output colours to the input: adain (default, reference), wavelet (shifts colours less), none")  # fmt: skip
    tuning.add_argument("--stabilize", choices=STABILIZE_MODES, default="auto",
                        help="steady still regions: each pixel keeps most of the previous output where the input has not changed "
                             "(default auto: as the model folder recommends, on for the bundled model, off for the official weights)")  # fmt: skip
    tuning.add_argument("--seed", type=int, default=0, help="noise seed (default 0); the same seed gives the same output")
    tuning.add_argument("--attention-backend", choices=["auto", "flex", "flash4", "gather", "dense"], default="auto",
                        help="sparse attention kernel (default auto: FlashAttention-4 on a Hopper or newer GPU where it is installed, else FlexAttention; gather on CPU)")  # fmt: skip
    tuning.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT on a GPU: ~30 %% faster after a one-minute first compile (long videos)")  # fmt: skip
    tuning.add_argument("--cuda-graphs", action="store_true",
                        help="replay the DiT's steady-state calls from CUDA graphs: helps when a slow CPU holds the GPU back")  # fmt: skip
    tuning.add_argument("--overlap-decode", action="store_true", help=OVERLAP_DECODE_HELP)
    _add_tiling_options(p.add_argument_group("GPU memory (tiling)"))

    out = p.add_argument_group("output format")
    out.add_argument("--codec", choices=list(VIDEO_CODECS), default=DEFAULT_CODEC,
                     help="video codec: h264 (default), h265 (smaller files), prores (ProRes 422 HQ, .mov/.mkv), "
                          "ffv1 (lossless RGB, .mkv/.mov)")  # fmt: skip
    out.add_argument("--crf", type=int,
                     help="H.264/H.265 quality, 0 (best, largest) … 51 (worst); default 18 for h264, 20 for h265")  # fmt: skip
    out.add_argument("--preset", choices=X264_PRESETS,
                     help=f"H.264/H.265 speed/size trade-off (default {DEFAULT_PRESET})")  # fmt: skip
    out.add_argument("--format", choices=list(IMAGE_FORMATS),
                     help="image format of folder outputs (default png; in batches, single images keep their format)")  # fmt: skip
    out.add_argument("--quality", type=positive_int, default=DEFAULT_QUALITY,
                     help=f"JPEG/WebP quality 1…100 (default {DEFAULT_QUALITY})")  # fmt: skip
    out.add_argument("--fps", type=frame_rate, default=DEFAULT_SEQUENCE_FPS,
                     help=f"frame rate of image inputs written as video, e.g. 24 or 30000/1001 (default {DEFAULT_SEQUENCE_FPS})")  # fmt: skip
    out.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary; only errors and warnings")
    p.set_defaults(func=_upscale)


def _demo(args: argparse.Namespace) -> int:
    from .demo import DemoConfig, run_demo
    from .pipeline import Upscaler

    upscaler = Upscaler.load(args.weights, device=args.device)
    print(upscaler.report.summary(), file=sys.stderr)
    folder = Path(args.output)
    scores = run_demo(folder, upscaler, DemoConfig(frames=args.frames), quiet=args.quiet)
    print(f"{int(scores['frames'])} frames upscaled ×4; PSNR-Y against the rendered ground truth: "
          f"bicubic {scores['psnr_y_bicubic']:.2f} dB, FlashVSR {scores['psnr_y_flashvsr']:.2f} dB")  # fmt: skip
    for name in ("input.mp4", "output.mp4", "side_by_side.mp4", "side_by_side.png"):
        print(f"  {folder / name}")
    return 0


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="render a clip, shrink it ×4 and upscale it back with the bundled model")
    p.add_argument("-o", "--output", default="demo", help="folder for the demo files (default: demo)")
    p.add_argument("--weights", metavar="DIR", help="model folder (default: the bundled model)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--frames", type=positive_int, default=48, help="frames to render (default 48, 2 s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_demo)


def _eval(args: argparse.Namespace) -> int:
    from .evaluation import BASELINES, EvalConfig, evaluate, find_clips

    methods = list(args.baselines) + [str(Path(m)) for m in args.model]
    for m in args.model:
        if not Path(m).is_dir():
            raise ValueError(f"--model {m}: not a model folder")
    paths, sequences = [Path(c) for c in args.clips], [Path(s) for s in args.sequence]
    missing = [str(c) for c in paths + sequences if not c.exists()]
    if missing:
        raise ValueError(f"ground truth not found: {', '.join(missing)}")
    clips = find_clips(paths, sequences)
    if not clips:
        raise ValueError("no videos, photos or image sequences found in the given paths")
    cfg = EvalConfig(scale=args.scale, degradation=args.degradation, seed=args.seed, max_frames=args.max_frames,
                     device=args.device or "cpu", dtype=args.dtype or "float32", crop=args.crop, stabilize=args.stabilize,
                     linears=args.linears)  # fmt: skip
    if not methods:
        methods = list(BASELINES)
    report = evaluate(clips, methods, cfg, Path(args.output))
    print(report.markdown())
    print(f"tables and crops in {args.output}")
    return 0


def _add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR/SSIM, temporal error and speed of models and baselines on ground truth")
    p.add_argument("clips", nargs="*", help="ground-truth videos or photos, or folders searched for them")
    p.add_argument("--sequence", action="append", default=[], metavar="DIR",
                   help="a folder of numbered frames, measured as one clip (repeatable)")  # fmt: skip
    p.add_argument("--model", action="append", default=[], metavar="DIR", help="a model folder to evaluate (repeatable)")
    p.add_argument("--baselines", nargs="*", choices=["bicubic", "lanczos"], default=["bicubic", "lanczos"],
                   help="interpolation baselines (default: both)")  # fmt: skip
    p.add_argument("--degradation", choices=["bicubic", "realbasicvsr"], default="bicubic",
                   help="how the LR inputs are made from the ground truth (default bicubic ×scale)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="degradation (and noise) seed")
    p.add_argument("--scale", type=positive_int, default=4)
    p.add_argument("--max-frames", type=int, default=33, help="frames per clip (0: all; default 33)")
    p.add_argument("--device", help="torch device for models (default cpu)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--crop", type=crop_size, metavar="WxH", help="measure on a centred WxH crop of each clip (faster)")
    p.add_argument("--stabilize", choices=STABILIZE_MODES, default="auto",
                   help="the models' stabilizer (default auto: as each model folder recommends)")  # fmt: skip
    p.add_argument("--linears", choices=LINEAR_FORMATS, default="model", help="the models' DiT linears (fp8: lossy)")
    p.add_argument("-o", "--output", default="eval", help="folder for results.md, results.csv and crops/")
    p.set_defaults(func=_eval)


def _add_probe_parser(sub) -> None:
    p = sub.add_parser("probe", help="describe videos, images or image folders (size, frames, fps, audio…)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=_probe)


# --------------------------------------------------------------------------------------------
# flashvsr


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="flashvsr", description="One-step streaming video super-resolution.")
    parser.add_argument("--version", action="version", version=f"flashvsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_upscale_parser(sub)
    _add_demo_parser(sub)
    _add_eval_parser(sub)
    _add_probe_parser(sub)
    _add_ui_parser(sub)

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
    bench.add_argument("--kv-cache", choices=["model", "fp8"], default="model", help="attention cache format (fp8: lossy)")
    bench.add_argument("--linears", choices=LINEAR_FORMATS, default="model", help="the DiT's linears (fp8: lossy)")
    bench.add_argument("--layers", type=int, default=30, help="DiT blocks (default 30, the official size)")
    bench.add_argument("--warmup", type=int, default=1, help="untimed passes first (compilation)")
    bench.add_argument("--repeats", type=int, default=2, help="timed passes; the median is reported")
    bench.add_argument("--attention-backend", default="auto", choices=["auto", "flex", "flash4", "gather", "dense"])
    bench.add_argument("--compile", action="store_true", help="torch.compile the DiT blocks (warm-up compiles)")
    bench.add_argument("--cuda-graphs", action="store_true", help="replay steady-state DiT calls from CUDA graphs")
    bench.add_argument("--overlap-decode", action="store_true", help=OVERLAP_DECODE_HELP)
    bench.add_argument("--stabilize", action="store_true", help="time the stabilizer too (on for the bundled model)")
    bench.add_argument("--file-io", action="store_true",
                       help="time whole file jobs as `flashvsr upscale` runs them: an H.264 input with audio decoded, "
                            "upscaled and encoded to H.264 (default: frames in memory)")  # fmt: skip
    _add_tiling_options(bench)
    bench.add_argument("--json", help="also write the result as JSON to this file")
    bench.set_defaults(func=_bench)

    from .train.cli import register as register_training  # train …, data …

    register_training(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message is meant for users: bad files, options and weights, I/O failures.
    (Imported on demand: these modules pull in torch and PyAV; ``bench`` runs without PyAV.)"""
    from .weights.loading import WeightsError

    known: tuple[type[BaseException], ...] = (WeightsError, ValueError, OSError)
    try:
        import av
    except ImportError:  # no media was read or written, so no media or job error can have been raised
        return known
    from .io.media import MediaError
    from .jobs import JobCancelled

    return known + (MediaError, JobCancelled, av.error.FFmpegError)


ALLOCATOR_SETTINGS = "expandable_segments:True"  # tiles and caches of changing sizes fragment fixed segments


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOCATOR_SETTINGS)  # before CUDA starts; a user's own wins
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(_one_line(e), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP turned into io.atomic.Interrupted
        print("flashvsr: interrupted; no partial output was left", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_INTERRUPTED)
    except Exception as e:  # the edge: users get one line, never a traceback
        if isinstance(e, _known_errors()):
            print(f"flashvsr: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_FAILED
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"flashvsr: internal error: {type(e).__name__}: {_one_line(e)} (set {DEBUG_ENV}=1 for details)",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
