"""`vggnet features`: the paper's Appendix B descriptors of a dataset, saved, and optionally
scored with a linear probe (linear SVM or logistic regression)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vggnet.cli.train import add_config_args, load_config
from vggnet.transfer.features import LAYERS, PROBES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="VGG descriptors of a dataset (paper Appendix B), optional linear probe")
    p.add_argument("--weights", required=True, metavar="SPEC|RUN_DIR",
                   help="a file, a run directory, or torchvision:vgg16[_bn] etc.")
    add_config_args(p)
    p.add_argument("--data", help="dataset name (default: the run directory's dataset)")
    p.add_argument("--layer", default="penultimate",
                   help=f"{' | '.join(LAYERS)} | a layer name. penultimate: FC2 output (4096-D at full width); conv: "
                        "pooled last conv map (512-D); conv1_1 ... conv5_4, relu*, pool1 ... pool5, fc6, fc7, fc8: "
                        "that layer's output, spatially averaged")
    p.add_argument("--scales", type=int, nargs="+", metavar="Q",
                   help="rescale the shorter side to each Q and average (paper: 256 384 512); default native size")
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image")
    p.add_argument("--split", nargs="+", choices=("train", "val", "test"), default=["train", "test"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="feats.safetensors, or feats.npy (one .npy per array)")
    p.add_argument("--linear-probe", choices=PROBES, help="fit on train descriptors, report test accuracy")
    p.add_argument("--C", type=float, default=1.0, help="the probe's inverse regularisation (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vggnet.data import loaders, sources
    from vggnet.data.augment import compute_stats
    from vggnet.errors import ConfigError
    from vggnet.transfer.features import describe, linear_probe, save_features
    from vggnet.weights.formats import load_pretrained
    from vggnet.weights.preprocess import imagenet

    run_config = Path(args.weights) / "config.yaml"
    if args.config is None and run_config.is_file():
        args.config = str(run_config)
    if args.data:
        args.overrides = [f"data.name={args.data}", *args.overrides]
    cfg = load_config(args)
    model = load_pretrained(args.weights)
    ds = sources.get(cfg.data, seed=cfg.seed)
    pre = (getattr(model, "metadata", None) or {}).get("preprocessing")
    if not pre:  # weights without recorded preprocessing: standardise with this dataset's statistics
        pre = {**imagenet(), "channels": model.config["in_channels"], "image_size": model.min_input_size,
               "stats": compute_stats(ds.train, seed=cfg.seed).to_dict()}
    arrays = {}
    for split in args.split:
        feats, labels = describe(model, loaders.iter_raw(ds, split, args.batch_size), pre, layer=args.layer,
                                 scales=args.scales, flip=not args.no_flip)
        arrays[f"{split}.features"], arrays[f"{split}.labels"] = feats, labels
        print(f"{split}: {feats.shape[0]} images -> {feats.shape[1]}-D descriptors")
    meta = {"weights": str(args.weights), "dataset": cfg.data.name, "layer": args.layer, "scales": args.scales,
            "flip": not args.no_flip, "classes": ds.classes}
    result = None
    if args.linear_probe:
        if "train" not in args.split or "test" not in args.split:
            raise ConfigError("--linear-probe needs --split train test")
        result = linear_probe(arrays["train.features"], arrays["train.labels"], arrays["test.features"],
                              arrays["test.labels"], kind=args.linear_probe, C=args.C, seed=cfg.seed)
        meta["linear_probe"] = result
    for path in save_features(args.out, arrays, meta):
        print(f"wrote {path}")
    if result:
        print(f"linear probe ({result['probe']}, C={result['C']:g}): test accuracy "
              f"{100 * result['test_accuracy']:.2f}% (train {100 * result['train_accuracy']:.2f}%, "
              f"chance {100 * result['chance']:.2f}%)")
        print(json.dumps(result))
    return 0
