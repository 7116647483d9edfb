"""Test-time protocols on the default run's net, weights stored as PyTorch stores them by default
(contiguous, NCHW) vs channels-last (NHWC), which `vggnet.eval.protocols.evaluate_models` now uses.

Dense (image + mirror) and multi-crop (5x5 shifts x 2 flips at Q = 32) of Fashion-MNIST test
images, fp32, alternating the two layouts over --repeats rounds; median images/s. Each process
first keeps freed memory as `vggnet train` and `vggnet eval` do on a CPU.

    python benchmarks/bench_eval_layout.py [--images 2000] [--repeats 3]

Writes benchmarks/results/eval_layout.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from vggnet import config
from vggnet.data import sources
from vggnet.data.augment import Stats
from vggnet.eval import protocols as P
from vggnet.eval.preprocess import Preprocessing
from vggnet.train.runtime import keep_freed_memory, make_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    keep_freed_memory()
    cfg = config.load(None, [])
    ds = sources.get(cfg.data, seed=cfg.seed)
    images = ds.test.images[: args.images]
    prep = Preprocessing.from_config(cfg, Stats([0.286], [0.353]), 1)
    model = make_model(cfg, num_classes=10, channels=1).eval()
    protocols = {"dense": lambda m: P.dense(m, images, prep, scale=32),
                 "multi_crop": lambda m: P.multi_crop(m, images, prep, scales=[32])}
    layouts = {"contiguous (NCHW)": torch.contiguous_format, "channels-last (NHWC)": torch.channels_last}
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for layout, fmt in layouts.items():
            model.to(memory_format=fmt)
            for name, run in protocols.items():
                run(model)  # warm-up: oneDNN's kernel choice for this layout
                start = time.perf_counter()
                run(model)
                rates.setdefault((name, layout), []).append(len(images) / (time.perf_counter() - start))
    lines = [f"## Evaluation layout (`python benchmarks/bench_eval_layout.py --images {args.images} --repeats "
             f"{args.repeats}`)", "",
             f"The default run's net (VGG-A-BN, width {cfg.model.width}, gap head), fp32, "
             f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
             "", "| protocol | contiguous, images/s | channels-last, images/s | ratio |", "|---|---:|---:|---:|"]
    for name in protocols:
        base, fast = (statistics.median(rates[name, layout]) for layout in layouts)
        lines.append(f"| {name} | {base:.0f} | {fast:.0f} | {fast / base:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    (Path(__file__).parent / "results" / "eval_layout.md").write_text(text)


if __name__ == "__main__":
    main()
