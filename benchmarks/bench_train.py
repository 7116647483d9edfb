"""Training speed, side by side in one run: vggnet vs a plain PyTorch loop.

Baseline (the issue's): torchvision vgg11_bn with a 512->10 head, torchvision FashionMNIST +
DataLoader(num_workers=2) + per-image transforms (Pad, RandomCrop, RandomHorizontalFlip,
ToTensor, Normalize), fp32, SGD, batch 128.
vggnet: the same network (VGG-A with BN, gap head) through vggnet's in-memory loader with
bf16 autocast and channels_last; and the default `vggnet train` configuration.

    python benchmarks/bench_train.py [--steps 40] [--time-to-accuracy]

Prints markdown and writes it to benchmarks/results/train.md (and train_time_to_accuracy.md).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from vggnet import config
from vggnet.train.trainer import Trainer, fit

FMNIST = "/usr/share/datasets/fashion-mnist"
BATCH = 128


def median_rate(step_fn, steps: int, warmup: int = 3) -> float:
    """Median images/s over windows of 5 steps, after warm-up."""
    for _ in range(warmup):
        step_fn()
    rates = []
    for _ in range(max(1, steps // 5)):
        t = time.perf_counter()
        for _ in range(5):
            step_fn()
        rates.append(5 * BATCH / (time.perf_counter() - t))
    return statistics.median(rates)


def baseline_rate(steps: int) -> float:
    root = tempfile.mkdtemp()
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in Path(FMNIST).glob("*.gz"):  # torchvision reads the decompressed idx files
        (raw / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    tf = T.Compose([T.Pad(2), T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize((0.286,), (0.353,))])
    data = torchvision.datasets.FashionMNIST(root, train=True, download=False, transform=tf)
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True,
                                         persistent_workers=True)
    model = torchvision.models.vgg11_bn(weights=None)
    model.features[0] = nn.Conv2d(1, 64, 3, padding=1)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    it = iter(loader)

    def step() -> None:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    return median_rate(step, steps)


def vggnet_rate(overrides: list[str], steps: int) -> float:
    cfg = config.load(None, ["train.progress=false", "train.health_every=0", f"train.batch_size={BATCH}", *overrides])
    trainer = Trainer(cfg, Path(tempfile.mkdtemp()), None, None)
    trainer.net.train()
    batches = trainer.train_loader.epoch(0)

    def step() -> None:
        x, y = next(batches)
        trainer.train_step(x, y)

    return median_rate(step, steps)


def time_to_accuracy(target: float, overrides: list[str]) -> dict:
    """Train the default config, scoring the test set after every epoch (not timed)."""
    from vggnet.eval.protocols import evaluate

    history = []

    def score(trainer: Trainer, record: dict) -> None:
        test = evaluate(trainer.model, trainer.ds, trainer.cfg, trainer.stats, device=trainer.device)
        history.append({"epoch": record["epoch"], "wall_s": record["wall_s"],
                        "test_top1": 1 - test["protocols"]["centre"]["top1_error"]})
        print(json.dumps(history[-1]), flush=True)

    cfg = config.load(None, ["train.progress=false", *overrides])
    fit(cfg, Path(tempfile.mkdtemp()) / "run", callbacks=(score,))
    hit = next((h for h in history if h["test_top1"] >= target), None)
    best = max(history, key=lambda h: h["test_top1"])
    return {"target": target, "reached_at_s": hit and hit["wall_s"], "best": best, "history": history}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--time-to-accuracy", action="store_true")
    ap.add_argument("--target", type=float, default=0.935, help="test accuracy to time (0.94 on a GPU)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    same_net = ["model.name=A", "model.width=1.0", "model.batch_norm=true", "model.head=gap", "model.dropout=0"]
    rows = [
        ("plain PyTorch: torchvision vgg11_bn, DataLoader(2 workers), fp32", baseline_rate(args.steps)),
        ("vggnet, same net (A-BN, gap), fp32, in-memory loader",
         vggnet_rate([*same_net, "train.amp=false", "train.channels_last=false"], args.steps)),
        ("vggnet, same net, bf16 + channels_last", vggnet_rate(same_net, args.steps)),
        ("vggnet default config (`vggnet train`), health monitor off", vggnet_rate([], args.steps)),
        ("vggnet default config, health monitor every 100 steps (the default)",
         vggnet_rate(["train.health_every=100"], args.steps)),
    ]
    base = rows[0][1]
    lines = [f"### Training throughput, Fashion-MNIST, batch {BATCH} ({platform.processor() or platform.machine()}, "
             f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
             "| loop | images/s (median) | ratio |", "|---|---:|---:|"]
    lines += [f"| {name} | {rate:.0f} | {rate / base:.2f}x |" for name, rate in rows]
    write("train.md", lines)
    if args.time_to_accuracy:
        result = time_to_accuracy(args.target, args.overrides)
        best = result["best"]
        reached = result["reached_at_s"]
        lines = [f"### Time to {100 * args.target:.1f}% Fashion-MNIST test accuracy (default config, "
                 f"{'GPU' if torch.cuda.is_available() else 'CPU'})", "",
                 f"- reached at: {'%.1f min' % (reached / 60) if reached else 'not reached'} of training",
                 f"- best: {100 * best['test_top1']:.2f}% after epoch {best['epoch']} ({best['wall_s'] / 60:.1f} min)",
                 "", "| epoch | minutes | test top-1 |", "|---:|---:|---:|"]
        lines += [f"| {h['epoch']} | {h['wall_s'] / 60:.1f} | {100 * h['test_top1']:.2f}% |" for h in result["history"]]
        write("train_time_to_accuracy.md", lines)


def write(name: str, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
