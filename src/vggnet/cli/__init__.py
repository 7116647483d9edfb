"""`vggnet` command line: parses, loads the config, calls the library. Each verb lives in
its own module with ``register(subparsers)``; errors become one line and exit code 2.

Warnings: vggnet's own (`VGGNetWarning`) are printed at once, one line each. Other libraries'
warnings (torch, PIL, ...) are held until the command ends, then printed one line each; when the
command ends in a vggnet error they are dropped, so that the error's one line is all there is."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vggnet.errors import VGGNetError, VGGNetWarning

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
    with one_line_warnings(args.verb) as held:
        try:
            return int(args.func(args) or 0)
        except VGGNetError as exc:
            held.clear()  # the error says what to do; library notes before it would only bury it
            print(f"vggnet {args.verb}: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"vggnet {args.verb}: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `vggnet sweep ... --dry-run | head`: the reader left; so do we, quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            return 141


@contextmanager
def one_line_warnings(verb: str) -> Iterator[list[str]]:
    """Show vggnet's warnings at once as one line; hold the other libraries' (see the module docstring)."""
    held: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        text = " ".join(str(message).split())
        if issubclass(category, VGGNetWarning):
            print(f"vggnet {verb}: warning: {text}", file=sys.stderr, flush=True)
            return
        parts = Path(str(filename)).parts
        module = next((p for p in ("torch", "PIL", "numpy", "h5py", "safetensors", "tensorboard") if p in parts),
                      "a library")
        if len(text) > 200:
            text = text[:200].rsplit(" ", 1)[0] + " ..."
        entry = f"vggnet {verb}: note: {module} warned: {text}"
        if entry not in held:
            held.append(entry)

    with warnings.catch_warnings():
        warnings.showwarning = show
        try:
            yield held
        finally:
            for entry in held:
                print(entry, file=sys.stderr)
