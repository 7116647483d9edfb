"""`vggnet predict`: the top-5 labels of image files, preprocessed as the weights were trained.

PNG or JPEG of any size, grayscale or RGB. A file that is not an image is skipped with a message;
the others are still predicted."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

from vggnet.data.formats import load_image
from vggnet.errors import ConfigError, DataError
from vggnet.eval import runs
from vggnet.eval.protocols import PROTOCOLS, check_protocols, fully_convolutional, resolve_device, run_protocol
from vggnet.model.architectures import HEAD_INPUT


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-5 labels of image files",
                       description="Predict image files with a weights file (or a run directory's model.safetensors).")
    p.add_argument("weights", metavar="WEIGHTS|RUN_DIR")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=int, default=5, metavar="K", help="labels per image (default 5)")
    p.add_argument("--protocol", default="centre", choices=PROTOCOLS, help="test protocol (default centre)")
    p.add_argument("--scales", nargs="+", type=int, default=None, metavar="Q", help="test scales Q")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def predict(loaded: runs.Loaded, images: list[torch.Tensor], *, protocol: str = "centre", top: int = 5,
            scales: list[int] | None = None, device: str = "auto") -> list[list[dict[str, Any]]]:
    """Per image, the top labels with probabilities, best first."""
    check_protocols([protocol])
    model = loaded.model.eval().to(resolve_device(device))
    if model.head == "fc" and loaded.prep.crop >= HEAD_INPUT:
        model = fully_convolutional(model)
    probs = run_protocol(protocol, model, images, loaded.prep, scales=scales)
    values, index = probs.topk(min(top, probs.shape[1]), dim=1)
    return [[{"label": loaded.classes[i], "index": i, "probability": p} for p, i in zip(v.tolist(), ix.tolist())]
            for v, ix in zip(values, index)]


def run(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, got {args.top}")
    loaded = runs.load(args.weights)
    images, paths, skipped = [], [], []
    for path in args.images:
        try:
            images.append(load_image(path))
            paths.append(path)
        except DataError as exc:
            skipped.append({"path": path, "error": str(exc)})
            print(f"vggnet predict: skipped: {exc}", file=sys.stderr)
    if not images:
        raise DataError(f"none of the {len(args.images)} files is a readable image (PNG, JPEG, ...)")
    results = predict(loaded, images, protocol=args.protocol, top=args.top, scales=args.scales, device=args.device)
    if args.json:
        print(json.dumps({"predictions": [{"path": p, "top": r} for p, r in zip(paths, results)],
                          "skipped": skipped}, indent=1))
        return 0
    for path, result in zip(paths, results):
        print(path)
        for rank, r in enumerate(result, start=1):
            print(f"  {rank}. {r['label']:<24} {r['probability']:.4f}")
    return 0
