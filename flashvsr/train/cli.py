"""``flashvsr train …`` and ``flashvsr data …`` subcommands (registered by flashvsr.cli)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        out[key] = _parse_value(value)
    return out


def _train(args) -> int:
    from .run import run_stage

    last = run_stage(args.config, _overrides(args.set))
    if int(os.environ.get("RANK", "0")) == 0:  # one line per run, not one per torchrun process
        print(json.dumps({"final_losses": last}))
    return 0


def _export(args) -> int:
    import torch

    from .export import export_model

    card = Path(args.card).read_text() if args.card else ""
    folder = export_model(args.vae, args.diffusion, args.tc_decoder, args.output, getattr(torch, args.dtype), card,
                          not args.no_vae)  # fmt: skip
    print(f"wrote {folder}")
    return 0


def _replace_decoder(args) -> int:
    import torch

    from .export import replace_decoder

    card = Path(args.card).read_text() if args.card else ""
    print(f"wrote {replace_decoder(args.model, args.tc_decoder, args.output, getattr(torch, args.dtype), card)}")
    return 0


def add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="train a model stage (see configs/) or export a model folder")
    tsub = train.add_subparsers(dest="train_command", required=True)
    for stage, what in [
        ("vae", "small causal video autoencoder from scratch"),
        ("stage1", "teacher: flow matching, full attention, non-causal LR projection"),
        ("stage2", "causal LCSA adaptation, random window and cache lengths"),
        ("stage3", "one-step distillation by distribution matching"),
        ("tcdecoder", "Tiny Conditional Decoder against ground truth and the VAE"),
    ]:
        p = tsub.add_parser(stage, help=what)
        p.add_argument("config", help="stage TOML file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. run.steps=10")
        p.set_defaults(func=_train, stage=stage)
    exp = tsub.add_parser("export", help="write a model folder from stage checkpoints")
    exp.add_argument("--vae", required=True, help="VAE stage run folder or checkpoint")
    exp.add_argument("--diffusion", required=True, help="Stage-3 (or Stage-2) run folder or checkpoint")
    exp.add_argument("--tc-decoder", required=True, help="TC decoder stage run folder or checkpoint")
    exp.add_argument("-o", "--output", required=True, help="model folder to write")
    exp.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    exp.add_argument("--card", help="a Markdown model card to include")
    exp.add_argument("--no-vae", action="store_true", help="leave out the VAE (no full variant)")
    exp.set_defaults(func=_export)
    rep = tsub.add_parser("replace-decoder", help="copy a model folder with a newly trained TC decoder (and the "
                          "student, where that decoder stage fine-tuned it too)")  # fmt: skip
    rep.add_argument("model", help="model folder to copy")
    rep.add_argument("--tc-decoder", required=True, help="TC decoder stage run folder or checkpoint")
    rep.add_argument("-o", "--output", required=True, help="model folder to write")
    rep.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    rep.add_argument("--card", help="a Markdown model card (default: the copied folder's)")
    rep.set_defaults(func=_replace_decoder)


def _scan(args) -> int:
    from ..data.curate import ScanConfig, load_scorer, scan

    scorers = dict(load_scorer(s) for s in args.scorer)
    cfg = ScanConfig(segment_seconds=args.segment_seconds, motion=not args.no_motion,
                     shard_index=args.shard_index, num_shards=args.num_shards)  # fmt: skip
    root = Path(args.root)
    path = scan([Path(p) for p in args.inputs], Path(args.output), cfg, root, args.sequence, scorers,
                progress=(lambda _: None) if args.quiet else (lambda p: print(f"scored {p}", flush=True)))  # fmt: skip
    print(f"wrote {path}")
    return 0


def _select(args) -> int:
    from dataclasses import fields

    from ..data.curate import Thresholds, select

    given = {f.name: getattr(args, f.name) for f in fields(Thresholds) if getattr(args, f.name, None) is not None}
    given["exclude"] = tuple(args.exclude)
    kept, total = select([Path(p) for p in args.scores], Path(args.output), Thresholds(**given))
    print(f"kept {kept} of {total} segments → {args.output}")
    return 0


def _cache(args) -> int:
    from ..data.manifest import read_manifest
    from ..data.media import store_segment

    segments = read_manifest(args.manifest)
    for seg in segments:
        store_segment(Path(args.output), Path(args.root), seg.path, seg.kind, seg.start, seg.frames, args.max_short_side)
    print(f"{len(segments)} segments decoded into {args.output}")
    return 0


def add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="curate training data: score segments, select a manifest")
    dsub = data.add_subparsers(dest="data_command", required=True)
    scan = dsub.add_parser("scan", help="cut videos into segments and score them (sharded, resumable)")
    scan.add_argument("inputs", nargs="+", help="folders or files of videos and photos")
    scan.add_argument("-o", "--output", required=True, help="scores JSONL (a shard suffix is added when sharded)")
    scan.add_argument("--root", required=True, help="data root: manifest paths are relative to it")
    scan.add_argument("--sequence", action="append", default=[], help="a folder of frames to treat as one video")
    scan.add_argument("--segment-seconds", type=float, default=8.0)
    scan.add_argument("--no-motion", action="store_true", help="skip optical flow (no OpenCV needed)")
    scan.add_argument("--shard-index", type=int, help="this process's shard (default: $RANK or $SLURM_PROCID)")
    scan.add_argument("--num-shards", type=int, help="number of shards (default: $WORLD_SIZE or $SLURM_NTASKS)")
    scan.add_argument("--scorer", action="append", default=[], help="learned scorer module:factory[=weights]")
    scan.add_argument("--quiet", action="store_true")
    scan.set_defaults(func=_scan)
    sel = dsub.add_parser("select", help="apply thresholds, merge consecutive segments, write the manifest")
    sel.add_argument("scores", nargs="+", help="scores JSONL files (all shards)")
    sel.add_argument("-o", "--output", required=True)
    for name in ("min_sharpness", "max_noise", "max_blockiness", "max_clipped", "min_motion", "max_motion"):
        sel.add_argument("--" + name.replace("_", "-"), dest=name, type=float)
    sel.add_argument("--exclude", action="append", default=[], help="hold out paths matching this pattern")
    sel.set_defaults(func=_select)
    cache = dsub.add_parser("cache", help="decode a manifest's segments once into a folder training reads from")
    cache.add_argument("manifest")
    cache.add_argument("--root", required=True, help="data root of the manifest's paths")
    cache.add_argument("-o", "--output", required=True, help="folder for the decoded segments (data.frame_store)")
    cache.add_argument("--max-short-side", type=int, default=0, help="as data.max_short_side in the configs")
    cache.set_defaults(func=_cache)


def register(sub: argparse._SubParsersAction) -> None:
    add_train_parser(sub)
    add_data_parser(sub)
