"""``python -m flashvsr.train …``: the ``train`` and ``data`` commands alone, for machines that
train without the media stack the upscaler needs (PyAV)."""

import argparse
import sys

from .cli import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flashvsr.train")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


sys.exit(main())
