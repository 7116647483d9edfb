"""`vggnet report DIR`: one self-contained report.html for a run or a sweep directory."""

from __future__ import annotations

import argparse

from vggnet.experiments.report import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write DIR/report.html for a run or a sweep directory")
    p.add_argument("dir", help="a run directory (runs/<name>) or a sweep directory (has sweep.db)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(render(args.dir))
    return 0
