"""`vggnet` command line: parses, loads the config, calls the library. Each verb lives in
its own module with ``register(subparsers)``; errors become one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from vggnet.errors import VGGNetError

# Verb modules, in the order `vggnet --help` lists them.
VERBS = ("train", "eval", "predict", "summary", "diagnose", "sweep", "report", "finetune", "features", "export")


def build_parser() -> argparse.ArgumentParser:
    from vggnet import __version__

    parser = argparse.ArgumentParser(prog="vggnet", description="The VGG networks: train, evaluate, reuse.")
    parser.add_argument("--version", action="version", version=f"vggnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        try:
            module = importlib.import_module(f"vggnet.cli.{verb}")
        except ModuleNotFoundError as exc:
            if exc.name == f"vggnet.cli.{verb}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["train"]  # the product in one breath: `vggnet` alone trains the default run
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VGGNetError as exc:
        print(f"vggnet {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vggnet {args.verb}: interrupted", file=sys.stderr)
        return 130
