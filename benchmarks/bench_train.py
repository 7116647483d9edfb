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
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from bench_data import cpu_name
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


def vggnet_curve(overrides: list[str], multi_crop_from: float = 1.0) -> list[dict]:
    """`vggnet train` (the default config): test accuracy after every epoch (scoring not timed;
    wall_s is training time, validation excluded), centre crop and dense (flips averaged); and the
    paper's multi-crop (5x5 shifts x 2 flips at Q = the image size; 25 times dense's cost) at
    epochs whose dense accuracy is at least ``multi_crop_from``."""
    from vggnet.eval.protocols import evaluate

    history = []

    def score(trainer: Trainer, record: dict) -> None:
        test = evaluate(trainer.model, trainer.ds, trainer.cfg, trainer.stats, device=trainer.device,
                        protocols=("centre", "dense"))["protocols"]
        row = {"epoch": record["epoch"], "wall_s": record["wall_s"], "test_top1": 1 - test["centre"]["top1_error"],
               "test_top1_flip": 1 - test["dense"]["top1_error"], "test_top1_multi_crop": None}
        if row["test_top1_flip"] >= multi_crop_from:
            crops = evaluate(trainer.model, trainer.ds, trainer.cfg, trainer.stats, device=trainer.device,
                             protocols=("multi_crop",), scales=[trainer.cfg.data.image_size])["protocols"]
            row["test_top1_multi_crop"] = 1 - crops["multi_crop"]["top1_error"]
        history.append(row)
        print("vggnet", json.dumps(row), flush=True)

    cfg = config.load(None, ["train.progress=false", *overrides])
    fit(cfg, Path(tempfile.mkdtemp()) / "run", callbacks=(score,))
    return history


def _idx(name: str) -> torch.Tensor:
    data = gzip.decompress((Path(FMNIST) / name).read_bytes())
    offset = 16 if data[3] == 3 else 8
    shape = (-1, 28, 28) if data[3] == 3 else (-1,)
    return torch.frombuffer(bytearray(data[offset:]), dtype=torch.uint8).reshape(shape)


def plain_curve(epochs: int, batch: int = 256, lr: float = 0.1, seed: int = 0) -> list[dict]:
    """The issue's 50-line PyTorch loop: Fashion-MNIST as uint8 in memory (all 60,000 images),
    half-width VGG-A with BN and a global-pool head written out in torch.nn, bf16 autocast,
    channels_last, one-cycle SGD with Nesterov, label smoothing 0.1, one random shift per batch
    and per-image flips; test accuracy with flips averaged after every epoch (not timed)."""
    torch.manual_seed(seed)
    xtr, ytr = _idx("train-images-idx3-ubyte.gz"), _idx("train-labels-idx1-ubyte.gz").long()
    xte, yte = _idx("t10k-images-idx3-ubyte.gz"), _idx("t10k-labels-idx1-ubyte.gz").long()
    mean, std = xtr.float().mean() / 255, xtr.float().std() / 255
    layers, c = [], 1
    for v in (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            c = v
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    model = model.to(memory_format=torch.channels_last)
    steps = epochs * (len(xtr) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)

    def prep(x: torch.Tensor) -> torch.Tensor:  # uint8 [N,28,28] -> normalised [N,1,32,32]
        x = (x.unsqueeze(1).float() / 255 - mean) / std
        return nn.functional.pad(x, (2, 2, 2, 2)).contiguous(memory_format=torch.channels_last)

    history, wall = [], 0.0
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(len(xtr))
        for i in range(len(xtr) // batch):
            idx = order[i * batch:(i + 1) * batch]
            x = prep(xtr[idx])
            dx, dy = torch.randint(-4, 5, (2,)).tolist()  # one shift for the batch
            x = torch.roll(nn.functional.pad(x, (4, 4, 4, 4)), (dy, dx), (2, 3))[:, :, 4:36, 4:36]
            x = torch.where(torch.rand(len(x), 1, 1, 1) < 0.5, x.flip(3), x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x).float(), ytr[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        wall += time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for i in range(0, len(xte), 1000):
                x = prep(xte[i:i + 1000])
                p = model(x).float().softmax(1) + model(x.flip(3)).float().softmax(1)
                correct += int((p.argmax(1) == yte[i:i + 1000]).sum())
        history.append({"epoch": epoch + 1, "wall_s": wall, "test_top1_flip": correct / len(xte)})
        print("plain", json.dumps(history[-1]), flush=True)
    return history


def in_own_process(fn, *args, **kwargs):
    """One curve in a fresh process: vggnet's CPU runs change process-wide settings (glibc's
    mallopt, vggnet.train.runtime.keep_freed_memory), which the plain loop must not inherit."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args, kwargs)


def time_to_accuracy(target: float, overrides: list[str], epochs: int, seeds: list[int],
                     plain_seeds: list[int], multi_crop_within: float = 0.005) -> dict:
    """Both loops in one run, the same epoch budget, seed by seed (interleaved, so both see the
    same machine): when each first reaches ``target``, and where each ends."""
    curves: dict[str, list[list[dict]]] = {"vggnet": [], "plain": []}
    for seed in sorted(set(seeds) | set(plain_seeds)):
        if seed in seeds:
            curves["vggnet"].append(in_own_process(vggnet_curve, [f"train.epochs={epochs}", f"seed={seed}", *overrides],
                                                     target - multi_crop_within))
        if seed in plain_seeds:
            curves["plain"].append(in_own_process(plain_curve, epochs, seed=seed))
    reached = {name: [next((h["wall_s"] for h in hist if h["test_top1_flip"] >= target), None) for hist in runs]
               for name, runs in curves.items()}
    reached["vggnet, multi-crop"] = [next((h["wall_s"] for h in hist if (h["test_top1_multi_crop"] or 0) >= target),
                                          None) for hist in curves["vggnet"]]
    return {"target": target, "epochs": epochs, "seeds": seeds, "plain_seeds": plain_seeds, "overrides": overrides,
            "multi_crop_from": target - multi_crop_within, "reached_at_s": reached, "curves": curves,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": cpu_name()}


def plot_curves(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    for (name, runs), colour in zip(result["curves"].items(), ("tab:blue", "tab:orange")):
        for i, hist in enumerate(runs):
            ax.plot([h["wall_s"] / 60 for h in hist], [100 * h["test_top1_flip"] for h in hist], marker="o", ms=3,
                    lw=1, color=colour, alpha=0.8, label=f"{name}, dense" if i == 0 else None)
            crops = [(h["wall_s"] / 60, 100 * h["test_top1_multi_crop"]) for h in hist if h.get("test_top1_multi_crop")]
            if crops:
                ax.scatter(*zip(*crops), marker="x", s=30, color=colour, label="vggnet, multi-crop" if i == 0 else None)
    ax.axhline(100 * result["target"], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("minutes of training (2-core CPU)" if not torch.cuda.is_available() else "minutes of training")
    ax.set_ylabel("test accuracy %")
    ax.set_ylim(88, 95)
    ax.set_title(f"Fashion-MNIST, {result['epochs']} epochs each")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def time_to_accuracy_table(result: dict) -> list[str]:
    target = 100 * result["target"]
    lines = [f"### Time to {target:.1f}% Fashion-MNIST test accuracy, {result['epochs']} epochs each (vggnet seeds "
             f"{', '.join(map(str, result['seeds']))}; plain loop seeds {', '.join(map(str, result['plain_seeds']))})",
             "", "Dense is the image and its mirror; multi-crop is the paper's 5x5 grid of shifted crops and their "
             f"mirrors at Q = the image size (50 views), scored at epochs whose dense accuracy is at least "
             f"{100 * result.get('multi_crop_from', 1.0):.1f}%.", "",
             f"| loop, protocol | minutes to {target:.1f}%, per seed | mean ± sd | final accuracy %, per seed "
             "| mean ± sd | minutes of training |", "|---|---|---:|---|---:|---:|"]
    rows = [("vggnet, dense", "vggnet", "test_top1_flip", "vggnet"),
            ("vggnet, multi-crop", "vggnet", "test_top1_multi_crop", "vggnet, multi-crop"),
            ("plain loop, dense", "plain", "test_top1_flip", "plain")]
    for label, name, key, reached in rows:
        runs, times = result["curves"][name], result["reached_at_s"].get(reached, [])
        if not runs or len(times) != len(runs):
            continue
        finals = [100 * hist[-1][key] if hist[-1].get(key) is not None else None for hist in runs]
        lines.append(f"| {label} | {' / '.join('%.2f' % (t / 60) if t else 'not reached' for t in times)} | "
                     f"{_mean_sd([t / 60 for t in times if t]) if all(times) else 'not reached by every seed'} | "
                     f"{' / '.join(f'{a:.2f}' if a is not None else 'not scored' for a in finals)} | "
                     f"{_mean_sd([a for a in finals if a is not None])} | "
                     f"{_mean_sd([hist[-1]['wall_s'] / 60 for hist in runs])} |")
    lines += ["", "![time to accuracy](time_to_accuracy.png)"]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--time-to-accuracy", action="store_true")
    ap.add_argument("--target", type=float, default=0.935, help="test accuracy to time (0.94 on a GPU)")
    ap.add_argument("--epochs", type=int, default=None, help="the epoch budget of both curves "
                    "(default: the default config's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the vggnet run")
    ap.add_argument("--plain-seeds", type=int, nargs="*", default=[0], help="seeds of the plain loop")
    ap.add_argument("--only-curves", action="store_true", help="skip the throughput table")
    ap.add_argument("--multi-crop-within", type=float, default=0.005, help="score multi-crop (50 views) at epochs "
                    "whose dense accuracy is within this of the target (default 0.005: half a point)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    same_net = ["model.name=A", "model.width=1.0", "model.batch_norm=true", "model.head=gap", "model.dropout=0"]
    if not args.only_curves:
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
        lines = [f"### Training throughput, Fashion-MNIST, batch {BATCH} ({cpu_name()}, "
                 f"{torch.get_num_threads()} threads, torch {torch.__version__})", "",
                 "| loop | images/s (median) | ratio |", "|---|---:|---:|"]
        lines += [f"| {name} | {rate:.0f} | {rate / base:.2f}x |" for name, rate in rows]
        write("train.md", lines)
    if args.time_to_accuracy:
        epochs = args.epochs or config.load(None, args.overrides).train.epochs
        result = time_to_accuracy(args.target, args.overrides, epochs, args.seeds, args.plain_seeds,
                                  args.multi_crop_within)
        results = Path(__file__).parent / "results"
        (results / "time_to_accuracy.json").write_text(json.dumps(result, indent=1))
        plot_curves(result, results / "time_to_accuracy.png")
        write("train_time_to_accuracy.md", time_to_accuracy_table(result))


def write(name: str, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
