"""`vggnet summary`: the family as a table (paper Table 2, with exact counts and MACs)."""

from __future__ import annotations

import argparse
import json

import torch

from vggnet.errors import ConfigError
from vggnet.model.architectures import CONFIGS, weight_layers
from vggnet.model.vgg import build_model, count_macs, count_params


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="the six networks (and B-5x5): weight layers, parameters, MACs")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--image-size", type=int, default=224, help="input size for MACs (default 224)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch-norm", action="store_true")
    p.add_argument("--head", default="fc", choices=("fc", "conv", "gap"))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--memory", action="store_true",
                   help="training memory per config: parameters, gradients, optimizer state, activations")
    p.add_argument("--batch-size", type=int, default=64, help="for --memory (default 64)")
    p.add_argument("--amp", action="store_true", help="for --memory: 16-bit autocast activations")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="for --memory (default sgd, the paper's)")
    p.set_defaults(func=run)


def family(image_size: int = 224, num_classes: int = 1000, **options) -> list[dict]:
    rows = []
    for name in CONFIGS:
        with torch.device("meta"):
            model = build_model(name, num_classes=num_classes, init=None, **options)
        rows.append({"name": name, "weight_layers": weight_layers(name), "params": count_params(model),
                     "macs": count_macs(model, image_size)})
    return rows


def memory_rows(args: argparse.Namespace) -> list[dict]:
    from vggnet.model.memory import estimate

    rows = []
    for name in CONFIGS:
        with torch.device("meta"):
            model = build_model(name, num_classes=args.num_classes, init=None, batch_norm=args.batch_norm,
                                head=args.head, width=args.width)
        rows.append({"name": name, **estimate(model, args.image_size, args.batch_size, amp=args.amp,
                                              optimizer=args.optimizer)})
    return rows


def run(args: argparse.Namespace) -> int:
    if args.image_size < 1:
        raise ConfigError(f"--image-size must be positive, got {args.image_size}")
    if args.memory:
        from vggnet.model.memory import table

        rows = memory_rows(args)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        print(f"training memory at {args.image_size}x{args.image_size}, batch {args.batch_size}, "
              f"{'16-bit autocast' if args.amp else 'fp32'}, {args.optimizer}:")
        print("\n".join(table(rows)))
        return 0
    rows = family(args.image_size, args.num_classes, batch_norm=args.batch_norm, head=args.head, width=args.width)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'config':<8}{'weight layers':>14}{'params':>16}{'GMACs@' + str(args.image_size):>14}")
    for r in rows:
        print(f"{r['name']:<8}{r['weight_layers']:>14}{r['params']:>16,}{r['macs'] / 1e9:>14.2f}")
    return 0
