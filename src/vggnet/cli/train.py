"""`vggnet train`: one run from a recipe; with no arguments, the Fashion-MNIST default."""

from __future__ import annotations

import argparse

from vggnet import config


def add_config_args(p: argparse.ArgumentParser) -> None:
    """-c/--config, --set, --data-dir: shared by every verb that reads a recipe."""
    p.add_argument("-c", "--config", help="YAML recipe (see configs/); default: the Fashion-MNIST default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=0.05 (repeatable)")
    p.add_argument("--data-dir", help="where the dataset files are (sets data.dir)")


def load_config(args: argparse.Namespace) -> config.RunConfig:
    overrides = list(args.overrides)
    if getattr(args, "data_dir", None):
        overrides.append(f"data.dir={args.data_dir}")
    return config.load(args.config, overrides)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VGG (default: Fashion-MNIST) and evaluate it")
    add_config_args(p)
    p.add_argument("--out", help="run directory (default runs/<dataset>-<config>-s<seed>); "
                                 "an unfinished one is resumed, a finished one kept")
    p.add_argument("--resume", action="store_true", help="insist on resuming --out (error if it has no checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out (its results are deleted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vggnet.train.trainer import fit

    cfg = load_config(args)
    result = fit(cfg, args.out, resume=args.resume, overwrite=args.overwrite)
    if result.test.get("task") == "localisation":
        rows = result.test["protocols"]
        errors = ", ".join(f"{name} {100 * r['top1_error']:.1f}%" + (f" (top-5 {100 * r['top5_error']:.1f}%)"
                                                                     if name == "classifier" else "")
                           for name, r in rows.items())
        print(f"test localisation error ({next(iter(rows.values()))['n']} images, IoU > 0.5): {errors}")
    elif result.test:
        rows = result.test["protocols"]
        accs = ", ".join(f"{name} {100 * (1 - r['top1_error']):.2f}%" for name, r in rows.items())
        print(f"test accuracy ({result.test['protocols'][next(iter(rows))]['n']} images): {accs}")
    if getattr(result, "skipped", None):
        from vggnet.data.loaders import describe_skipped

        print(f"skipped {describe_skipped(result.skipped)}; all listed in {result.out_dir / 'run.json'}")
    what = "1 - localisation error" if result.test.get("task") == "localisation" else "accuracy"
    if result.best_val_top1 is None:
        print("no validation images (data.val_fraction=0): tested with the last epoch's weights")
    else:
        print(f"best validation {what}: {100 * result.best_val_top1:.2f}%")
    print(f"run directory: {result.out_dir}")
    return 0
