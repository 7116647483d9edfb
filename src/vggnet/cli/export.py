"""`vggnet export`: weights or a run to ONNX / TorchScript (checked against PyTorch), or to
another framework's weights layout (torchvision, timm, Keras)."""

from __future__ import annotations

import argparse
import sys

from vggnet.weights.layout import EXPORTS, FORMATS, HOLDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export weights to ONNX, TorchScript, or torchvision/timm/Keras files")
    p.add_argument("weights", metavar="WEIGHTS|RUN_DIR", help="a file, a run directory, or torchvision:NAME")
    p.add_argument("--format", choices=EXPORTS + FORMATS,
                   help="default: from the --out name (.onnx, .weights.h5 keras3, .h5 keras, .pth torchvision, "
                        ".safetensors vggnet); " + "; ".join(f"{k}: {v}" for k, v in HOLDS.items()))
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--image-size", type=int,
                   help="example input size (default: the weights' image_size); fc head: fixed at this size")
    p.add_argument("--head", choices=("fc", "conv"), help="convert the head first (conv: any input >= 224)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from vggnet.transfer.export import choose_format, example_input, export, max_difference
    from vggnet.weights.formats import how_to_load, load_pretrained, save_as

    model = load_pretrained(args.weights, head=args.head).eval()
    fmt, warning = choose_format(args.out, args.format, model)
    if warning:
        print(f"vggnet export: warning: {warning}", file=sys.stderr)
    if fmt in FORMATS:
        path = save_as(model, args.out, fmt)
        print(f"wrote {path} ({fmt}); load it with {how_to_load(fmt, model, path)}")
        return 0
    path = export(model, args.out, fmt, image_size=args.image_size)
    shape = example_input(model, args.image_size).shape[1:]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    diff = max_difference(model, path, fmt, x)
    print(f"wrote {path} ({fmt}); max |{fmt} - PyTorch| on a batch of 2: {diff:.2e}")
    return 0
