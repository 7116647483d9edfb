"""`vggnet finetune`: a pretrained VGG, a new head for a registry dataset, frozen or full
fine-tuning or per-group learning rates (seed 003), trained by the usual trainer."""

from __future__ import annotations

import argparse

from vggnet.cli.train import add_config_args, load_config
from vggnet.errors import ConfigError
from vggnet.transfer.finetune import GROUPS, MODES


def parse_scales(items: list[str]) -> dict[str, float]:
    """["block1=0", "fc=0.5"] -> {"block1": 0.0, "fc": 0.5}."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ConfigError(f"--group-lr expects GROUP=SCALE (groups: {', '.join(GROUPS)}), got '{item}'")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune pretrained weights on a dataset (new head; frozen/full/groups)")
    p.add_argument("--weights", required=True, metavar="SPEC",
                   help="a file (.safetensors, .pth, .h5), a run directory, or torchvision:vgg16[_bn] etc.")
    add_config_args(p)
    p.add_argument("--data", help="dataset name from the registry (sets data.name)")
    p.add_argument("--mode", choices=MODES, default="frozen",
                   help="frozen: train the classifier only; full: all layers, features at a lower lr; "
                        "groups: a learning-rate scale per group (--group-lr)")
    p.add_argument("--epochs", type=int, help="sets train.epochs")
    p.add_argument("--lr", type=float, default=0.01, help="base learning rate (default 0.01)")
    p.add_argument("--features-lr-scale", type=float, default=0.1,
                   help="--mode full: features learn at this x lr (default 0.1)")
    p.add_argument("--group-lr", action="append", default=[], metavar="GROUP=SCALE",
                   help=f"lr scale of one group ({', '.join(GROUPS)}); 0 freezes it (repeatable)")
    p.add_argument("--out", help="run directory (default runs/<name>)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vggnet.transfer.finetune import finetune

    if args.data:
        args.overrides = [f"data.name={args.data}", *args.overrides]
    if args.epochs is not None:
        args.overrides.append(f"train.epochs={args.epochs}")
    args.overrides.append(f"train.lr={args.lr}")
    cfg = load_config(args)
    result = finetune(args.weights, cfg, args.out, mode=args.mode, features_lr_scale=args.features_lr_scale,
                      scales=parse_scales(args.group_lr))
    if result.test:
        rows = result.test["protocols"]
        print("test accuracy: " + ", ".join(f"{n} {100 * (1 - r['top1_error']):.2f}%" for n, r in rows.items()))
    if result.best_val_top1 is not None:
        print(f"best validation accuracy: {100 * result.best_val_top1:.2f}%")
    print(f"run directory: {result.out_dir}")
    return 0
