"""Dense vs multi-crop evaluation cost per image at Q in {256, 384, 512} (paper 3.2 argues dense is cheaper).

For each Q: multiply-accumulates per image (exact, from the layer shapes, at the chosen width) and
measured wall time per image, for dense evaluation (whole Q x 4Q/3 image + its flip through the
fully-convolutional net) and multi-crop (5x5 grid x 2 flips = 50 crops of 224). Prints a Markdown
table for BENCHMARKS.md.

    python benchmarks/bench_eval.py                          # VGG-D, full width (GPU recommended)
    python benchmarks/bench_eval.py --width 0.25 --images 2  # a CPU-sized check
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from vggnet.data.augment import Stats
from vggnet.eval import protocols as P
from vggnet.eval.preprocess import Preprocessing
from vggnet.model.vgg import build_model, count_macs
from vggnet.config import DataConfig


def timed(fn, repeats: int) -> float:  # noqa: ANN001
    fn()  # warm-up (kernel selection, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="D")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--scales", type=int, nargs="+", default=[256, 384, 512])
    ap.add_argument("--images", type=int, default=4, help="images per timed call")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=100, help="crops per forward pass")
    args = ap.parse_args()

    device = P.resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=1000, width=args.width, head="fc", seed=0).eval().to(device)
    conv = P.fully_convolutional(model)
    stats = Stats([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    print(f"VGG-{args.model} width {args.width}, {args.images} images of Q x 4Q/3 per call, device {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| Q | dense GMAC/img | multi-crop GMAC/img | MAC ratio | dense ms/img | multi-crop ms/img | time ratio |")
    print("|---|---|---|---|---|---|---|")
    crop_macs = count_macs(model, 224)
    for q in args.scales:
        prep = Preprocessing(DataConfig(image_size=224, scale=[q]), stats, 3)
        images = torch.randint(0, 256, (args.images, 3, q, q * 4 // 3), dtype=torch.uint8)
        dense_macs = 2 * count_macs(conv, (q, q * 4 // 3))
        crop_total = 2 * P.GRID * P.GRID * crop_macs
        t_dense = timed(lambda: P.dense(conv, images, prep, scale=q, batch_size=args.batch_size), args.repeats)
        t_crop = timed(lambda: P.multi_crop(conv, images, prep, scales=[q], batch_size=args.batch_size), args.repeats)
        n = args.images
        print(f"| {q} | {dense_macs / 1e9:.2f} | {crop_total / 1e9:.2f} | {crop_total / dense_macs:.1f}x | "
              f"{1e3 * t_dense / n:.1f} | {1e3 * t_crop / n:.1f} | {t_crop / t_dense:.1f}x |")


if __name__ == "__main__":
    main()
