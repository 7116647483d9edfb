"""`vggnet features`: the paper's Appendix B descriptors of a dataset, saved, and optionally
scored with a linear probe (linear SVM or logistic regression) or Appendix B's protocols:
``--protocol voc`` (per-class SVMs, VOC-2007 mAP) and ``--protocol caltech`` (random splits,
mean class recall). Several ``--weights`` (D and E) are stacked."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vggnet.cli.train import add_config_args, load_config
from vggnet.transfer.features import LAYERS, PROBES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="VGG descriptors of a dataset (paper Appendix B), optional linear probe")
    p.add_argument("--weights", required=True, nargs="+", metavar="SPEC|RUN_DIR",
                   help="a file, a run directory, or torchvision:vgg16[_bn] etc.; several are stacked (D & E)")
    add_config_args(p)
    p.add_argument("--data", help="dataset name (default: the run directory's dataset)")
    p.add_argument("--layer", default="penultimate",
                   help=f"{' | '.join(LAYERS)} | a layer name. penultimate: FC2 output (4096-D at full width); conv: "
                        "pooled last conv map (512-D); conv1_1 ... conv5_4, relu*, pool1 ... pool5, fc6, fc7, fc8: "
                        "that layer's output, spatially averaged")
    p.add_argument("--scales", type=int, nargs="+", metavar="Q",
                   help="rescale the shorter side to each Q and average (paper: 256 384 512); default native size")
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image")
    p.add_argument("--stack-scales", action="store_true",
                   help="concatenate the per-scale descriptors instead of averaging them (paper: Caltech)")
    p.add_argument("--protocol", choices=("voc", "caltech"),
                   help="Appendix B: voc (--data-dir a VOC root: per-class SVMs, 11-point mAP) or caltech "
                        "(--splits random splits of data.train_per_class per class, mean class recall)")
    p.add_argument("--splits", type=int, default=3, help="caltech: random splits (paper: 3)")
    p.add_argument("--test-per-class", type=int, help="caltech: at most this many test images per class "
                                                      "(paper: 50 for Caltech-101; default all the rest)")
    p.add_argument("--split", nargs="+", choices=("train", "val", "test"), default=["train", "test"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", required=True, help="feats.safetensors, or feats.npy (one .npy per array)")
    p.add_argument("--linear-probe", choices=PROBES, help="fit on train descriptors, report test accuracy")
    p.add_argument("--C", type=float, default=1.0, help="the probe's inverse regularisation (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vggnet.data import loaders, sources
    from vggnet.errors import ConfigError
    from vggnet.transfer.features import linear_probe, save_features

    if args.protocol:
        return run_protocol(args)
    run_config = Path(args.weights[0]) / "config.yaml"
    if args.config is None and run_config.is_file():
        args.config = str(run_config)
    if args.data:
        args.overrides = [f"data.name={args.data}", *args.overrides]
    cfg = load_config(args)
    ds = sources.get(cfg.data, seed=cfg.seed)
    arrays = {}
    for split in args.split:
        feats, labels = _describe(args, lambda: loaders.iter_raw(ds, split, args.batch_size), ds.train, cfg.seed)
        arrays[f"{split}.features"], arrays[f"{split}.labels"] = feats, labels
        print(f"{split}: {feats.shape[0]} images -> {feats.shape[1]}-D descriptors")
    weights = str(args.weights[0]) if len(args.weights) == 1 else list(args.weights)
    meta = {"weights": weights, "dataset": cfg.data.name, "layer": args.layer, "scales": args.scales,
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


def _describe(args: argparse.Namespace, batches, train_split, seed: int):  # noqa: ANN001, ANN202
    """Descriptors of the images ``batches()`` yields, by every --weights net, stacked."""
    from vggnet.data.augment import compute_stats
    from vggnet.transfer.appendix_b import stack
    from vggnet.transfer.features import describe
    from vggnet.weights.formats import load_pretrained
    from vggnet.weights.preprocess import imagenet

    parts, labels = [], None
    for spec in args.weights:
        model = load_pretrained(spec)
        pre = (getattr(model, "metadata", None) or {}).get("preprocessing")
        if not pre:  # weights without recorded preprocessing: standardise with this dataset's statistics
            pre = {**imagenet(), "channels": model.config["in_channels"], "image_size": model.min_input_size,
                   "stats": compute_stats(train_split, seed=seed).to_dict()}
        feats, labels = describe(model, batches(), pre, layer=args.layer, scales=args.scales,
                                 flip=not args.no_flip, stack_scales=args.stack_scales)
        parts.append(feats)
    return (stack(*parts) if len(parts) > 1 else parts[0]), labels


def run_protocol(args: argparse.Namespace) -> int:
    """Appendix B's VOC or Caltech protocol; the result printed and written to --out (JSON)."""
    import torch

    from vggnet.data import loaders, sources
    from vggnet.data.boxes import voc_image_labels
    from vggnet.data.formats import load_image
    from vggnet.errors import ConfigError
    from vggnet.files import atomic_write
    from vggnet.transfer.appendix_b import caltech_protocol, voc_map

    if args.data:
        args.overrides = [f"data.name={args.data}", *args.overrides]
    cfg = load_config(args)
    if args.protocol == "voc":
        if not cfg.data.dir:
            raise ConfigError("--protocol voc needs --data-dir: a VOC root "
                              "(Annotations/, JPEGImages/, ImageSets/Main/)")
        root = Path(cfg.data.dir).expanduser()
        listed = {p.stem for p in (root / "ImageSets" / "Main").glob("*.txt")}
        train_name = "trainval" if "trainval" in listed else "train"
        test_name = "test" if "test" in listed else "val"
        tr_paths, tr_y, classes, _ = voc_image_labels(root, train_name)
        te_paths, te_y, _, _ = voc_image_labels(root, test_name, classes)
        as_batches = lambda paths: lambda: ([[load_image(p)], torch.zeros(1, dtype=torch.long)]  # noqa: E731
                                            for p in paths)
        stats_split = sources.Split(torch.zeros(len(tr_paths), dtype=torch.long), paths=tr_paths)
        xtr, _ = _describe(args, as_batches(tr_paths), stats_split, cfg.seed)
        xte, _ = _describe(args, as_batches(te_paths), stats_split, cfg.seed)
        result = voc_map(xtr, tr_y, xte, te_y, classes, C=args.C, seed=cfg.seed)
        print(f"VOC ({train_name} -> {test_name}, {len(classes)} classes): mAP {100 * result['map']:.1f}% "
              "(11-point, VOC-2007)")
    else:
        ds = sources.get(cfg.data, seed=cfg.seed)
        feats = [_describe(args, lambda s=s: loaders.iter_raw(ds, s, args.batch_size), ds.train, cfg.seed)
                 for s in ("train", "test")]
        x, y = torch.cat([f[0] for f in feats]), torch.cat([f[1] for f in feats])
        result = caltech_protocol(x, y, train_per_class=cfg.data.train_per_class, test_per_class=args.test_per_class,
                                  splits=args.splits, C=args.C, seed=cfg.seed)
        print(f"{cfg.data.name}: mean class recall {100 * result['mean_class_recall']:.1f}% "
              f"± {100 * result['std']:.1f} over {args.splits} splits of {cfg.data.train_per_class} per class")
    result["weights"] = list(args.weights)
    text = json.dumps(result, indent=1)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {args.out}")
    return 0
