"""`vggnet diagnose`: before training, will this config learn? One forward and backward pass
at initialisation on a real batch; per-layer table, verdict, reason and fixes."""

from __future__ import annotations

import argparse
import json

from vggnet.errors import ConfigError
from vggnet import config
from vggnet.train.health import diagnose_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diagnose", help="check a config's signal propagation at initialisation")
    p.add_argument("config", nargs="?", default=None, help="YAML recipe (default: the built-in defaults)")
    p.add_argument("-c", "--config", dest="config_flag", default=None, help="same as the positional CONFIG")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--batch-size", type=int, default=64, help="images in the diagnosed batch (default 64)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 2:
        raise ConfigError(f"--batch-size must be at least 2 (dead ReLUs and stds need a batch), got {args.batch_size}")
    if args.config and args.config_flag:
        raise ConfigError("give the config once: either CONFIG or -c CONFIG")
    cfg = config.load(args.config or args.config_flag, args.set)
    diagnosis = diagnose_config(cfg, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2, allow_nan=True))
    else:
        m = cfg.model
        print(f"VGG-{m.name}{' BN' if m.batch_norm else ''}, init {m.init}, head {m.head}, width {m.width:g}, "
              f"{cfg.data.name} at {cfg.data.image_size} px, batch {args.batch_size}"
              f"{', pre-initialised from ' + m.pre_initialise if m.pre_initialise else ''}\n")
        print(diagnosis.table())
    return 0 if diagnosis.verdict != "will not train" else 1
