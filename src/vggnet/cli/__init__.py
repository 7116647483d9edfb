"""`vggnet` command line: parses, loads the config, calls the library. Each verb lives in
its own module with ``register(subparsers)``; errors become one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from vggnet.errors import VGGNetError

# Verb modules, in the order `vggnet --help` lists them.
VERBS = ("train", "eval", "predict", "summary", "diagnose", "sweep", "report", "finetune", "features", "export")


def build_parser(verbs: tuple[str, ...] = VERBS) -> argparse.ArgumentParser:
    """The parser with the given verbs' subcommands (importing only those modules)."""
    from vggnet import __version__

    parser = argparse.ArgumentParser(prog="vggnet", description="The VGG networks: train, evaluate, reuse.")
    parser.add_argument("--version", action="version", version=f"vggnet {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in verbs:
        importlib.import_module(f"vggnet.cli.{verb}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["train"]  # the product in one breath: `vggnet` alone trains the default run
    # import only the verb that runs: a verb's heavy or optional imports never slow or break another
    parser = build_parser((argv[0],) if argv[0] in VERBS else VERBS)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # e.g. `vggnet --verbose`: no verb given
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
