"""`vggnet eval`: score a run (or weights, or an ensemble of them) under the paper's test protocols
and print a table shaped like its Table 5: rows the protocols, columns top-1 and top-5 error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vggnet.data import sources
from vggnet.errors import ConfigError
from vggnet.eval import runs
from vggnet.eval.protocols import PROTOCOLS, evaluate_models, resolve_device, write_eval
from vggnet.model.vgg import describe
from vggnet.train.runtime import keep_freed_memory


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="test protocols (centre, dense, multi-scale, multi-crop, fusion, ensemble)",
                       description="Evaluate RUN_DIR or WEIGHTS; several of them are averaged as an ensemble.")
    p.add_argument("sources", nargs="+", metavar="RUN_DIR|WEIGHTS")
    p.add_argument("--protocol", nargs="+", default=None, metavar="NAME",
                   help=f"one or more of {', '.join(PROTOCOLS)}, ensemble (default: the run's eval.protocols)")
    p.add_argument("--scales", nargs="+", type=int, default=None, metavar="Q",
                   help="test scales Q for multi_scale / multi_crop / fusion (one Q is also used by centre, dense)")
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images (quick checks)")
    p.add_argument("--data", default=None, metavar="NAME", help="dataset name (default: the run's / the weights')")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where the dataset files are (data.dir)")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default eval.batch_size)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", default=None, metavar="PATH", help="where to write eval.json (default: next to the run)")
    p.add_argument("--json", action="store_true", help="print the eval.json dict instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {args.limit}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    loaded = [runs.load(s, data=args.data, data_dir=args.data_dir) for s in args.sources]
    first = loaded[0]
    cfg = first.cfg
    protocols = args.protocol or cfg.eval.protocols
    ds = sources.get(cfg.data, seed=cfg.seed)
    if resolve_device(args.device).type == "cpu":
        keep_freed_memory()  # as in training: multi-crop's views otherwise fault their memory in afresh
    result = evaluate_models([(x.model, x.prep) for x in loaded], ds, split=args.split, protocols=protocols,
                             scales=args.scales or cfg.eval.scales, device=args.device, limit=args.limit,
                             batch_size=args.batch_size or cfg.eval.batch_size)
    result["models"] = [str(x.path) for x in loaded]
    out = Path(args.out) if args.out else first.run_dir / ("eval.json" if len(loaded) == 1 else "eval-ensemble.json")
    write_eval(result, out)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    title = describe(first.model) if len(loaded) == 1 else f"ensemble of {len(loaded)} models"
    print(f"{title} on {ds.name} {args.split} ({result['n']} images)")
    print(format_table(result))
    print(format_analysis(result))
    print(f"wrote {out}")
    warning = result["analysis"]["collapse_warning"]
    if warning:
        print(f"vggnet eval: warning: {warning}", file=sys.stderr)
    return 0


def format_table(result: dict[str, Any]) -> str:
    """Paper Table 5 layout: one row per protocol, top-1 / top-5 error in percent."""
    lines = [f"{'protocol':<22}{'test scale Q':<18}{'top-1 err (%)':>14}{'top-5 err (%)':>14}"]
    for name, row in result["protocols"].items():
        scales = ",".join(str(q) for q in row.get("scales") or [])
        lines.append(f"{name:<22}{scales:<18}{100 * row['top1_error']:>14.2f}{100 * row['top5_error']:>14.2f}")
    return "\n".join(lines)


def format_analysis(result: dict[str, Any]) -> str:
    """A few lines of error analysis (from the first protocol)."""
    a = result["analysis"]
    lines = [f"error analysis ({result['analysis_protocol']}): most predicted '{a['max_share_class']}' "
             f"({a['max_share']:.0%} of predictions)"]
    if a["worst_classes"]:
        worst = ", ".join(f"{c['class']} {c['recall']:.0%}" for c in a["worst_classes"][:3])
        lines.append(f"  worst classes (recall): {worst}")
    if a["most_confused_pairs"]:
        pairs = ", ".join(f"{p['true']} -> {p['predicted']} ({p['count']})" for p in a["most_confused_pairs"][:3])
        lines.append(f"  most confused (true -> predicted): {pairs}")
    return "\n".join(lines)
