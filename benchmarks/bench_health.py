"""Training-health benchmarks.

    python benchmarks/bench_health.py              # monitor overhead -> results/health.md
    python benchmarks/bench_health.py calibrate    # diagnose() over A..E x BN x init at 32 and 224 px
                                                   #   -> results/health_calibration.md

Overhead: a small VGG training loop (CPU, fixed batches) timed without the monitor and with it
at every=100 and every=10; the ratio is the cost. Calibration: the signal ratio, gradient ratio,
logit scale and verdict of `vggnet.train.health.diagnose` for every config on one real batch of
Fashion-MNIST (padded to 32 px, gap head, 10 classes; and upsampled to 224 px RGB, fc head,
1000 classes, i.e. ImageNet-shaped), which is where the thresholds in health.py come from.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from vggnet.data import sources
from vggnet.model.init import INITS, pre_initialise
from vggnet.model.vgg import build_model
from vggnet.train.health import Monitor, diagnose
from vggnet.config import DataConfig

RESULTS = Path(__file__).parent / "results"
NETS = ("A", "B", "C", "D", "E")


def fashion_batch(size: int, n: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n standardised Fashion-MNIST training images at size x size (padded to 32, else upsampled)."""
    ds = sources.get(DataConfig(name="fashion-mnist"), seed=0)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds.train), generator=g)[:n]
    x = ds.train.images[idx].float() / 255
    x = nn.functional.pad(x, (2, 2, 2, 2)) if size == 32 else nn.functional.interpolate(x, size=size, mode="bilinear")
    x = ((x - x.mean()) / x.std()).expand(-1, channels, -1, -1).contiguous()
    return x, ds.train.labels[idx]


@torch.no_grad()
def rescaled_a(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Stand-in for a trained A: each weight layer scaled so its output has unit std on x
    (a trained net passes its signal on; that is what pre-initialisation copies)."""
    for module in [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]:
        out = {}
        h = module.register_forward_hook(lambda _m, _i, o: out.__setitem__("std", o.std()))
        model.train()(x)
        h.remove()
        module.weight.mul_(1 / out["std"].clamp_min(1e-30))
    return model


def calibrate(sizes: list[int], widths: list[float], nets: tuple[str, ...] = NETS) -> str:
    lines = ["## diagnose calibration (one batch at initialisation)", "",
             f"torch {torch.__version__}, {platform.processor() or platform.machine()}, seed 0. "
             "32 px: 64 Fashion-MNIST images padded to 32, gap head, 10 classes. "
             "224 px: 8 Fashion-MNIST images upsampled to 224, RGB, fc head, 1000 classes.", "",
             "| px | width | net | BN | init | signal ratio | grad ratio | logit std | median grad/weight | loss | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in sizes:
        head, classes, n, channels = ("gap", 10, 64, 1) if size == 32 else ("fc", 1000, 8, 3)
        x, y = fashion_batch(size, n, channels)
        y = y % classes
        for width in widths if size == 32 else [1.0]:  # width 0.25 is for the tests, which use 32 px
            cases = [(net, bn, init, None) for net in nets for bn in (False, True) for init in INITS]
            cases += [(net, False, init, "A") for net in ("D", "E") if net in nets
                      for init in ("std0.01", "std0.1")]
            for net, bn, init, pre in cases:
                t0 = time.perf_counter()
                kw = dict(num_classes=classes, batch_norm=bn, head=head, in_channels=channels, width=width)
                model = build_model(net, init=init, seed=0, **kw)
                if pre:
                    pre_initialise(model, rescaled_a(build_model("A", init="std0.01", seed=1, **kw), x))
                d = diagnose(model, x, y)
                ratio = statistics.median(r.grad_to_weight for r in d.layers)
                label = f"{init} + pre-init from A" if pre else init
                lines.append(f"| {size} | {width:g} | {net} | {'yes' if bn else 'no'} | {label} | {d.signal_ratio:.2g} | "
                             f"{d.grad_ratio:.2g} | {d.logit_std:.2g} | {ratio:.2g} | {d.loss:.3g} | {d.verdict} |")
                print(lines[-1], f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
    return "\n".join(lines) + "\n"


def _loop(model: nn.Module, batches, steps: int, monitor: Monitor | None) -> tuple[float, float]:
    """(loop seconds, seconds inside the monitor's calls): the second share is robust to machine load."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inside = 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        x, y = batches[step % len(batches)]
        t = time.perf_counter()
        if monitor:
            monitor.before_step(step)
        inside += time.perf_counter() - t
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t = time.perf_counter()
        if monitor:
            monitor.after_backward(step)
        inside += time.perf_counter() - t
        opt.step()
        t = time.perf_counter()
        if monitor:
            monitor.after_step(step, loss.detach())
        inside += time.perf_counter() - t
    return time.perf_counter() - t0, inside


def overhead(steps: int, repeats: int) -> str:
    x, y = fashion_batch(32, 64 * 4, 1)
    batches = list(zip(x.split(64), y.split(64)))
    times: dict[str, list[float]] = {"off": [], "every=100": [], "every=10": []}
    inside: dict[str, list[float]] = {k: [] for k in times}
    for _ in range(repeats):  # interleaved, so drift in machine load hits every variant alike
        for label in times:
            model = build_model("A", num_classes=10, batch_norm=True, head="gap", in_channels=1, width=0.25, seed=0)
            mon = None if label == "off" else Monitor(model, num_classes=10, every=int(label.split("=")[1]),
                                                       log=lambda e: None)
            total, spent = _loop(model, batches, steps, mon)
            times[label].append(total)
            inside[label].append(spent / total)
    base = statistics.median(times["off"])
    lines = ["## Training-health monitor overhead", "",
             f"VGG-A BN, width 0.25, 32 px, batch 64, SGD, {steps} steps, median of {repeats} interleaved "
             f"repeats; torch {torch.__version__}, {torch.get_num_threads()} threads, CPU.", "",
             "The wall-clock ratio is at the mercy of other load on the machine; the share of the loop spent "
             "inside the monitor's calls (same run) is not. Forward-hook time on sampled steps is in neither.", "",
             "| monitor | ms per step | wall-clock vs off | time inside monitor calls |", "|---|---|---|---|"]
    for label, ts in times.items():
        t = statistics.median(ts)
        lines.append(f"| {label} | {t / steps * 1e3:.1f} | {100 * (t / base - 1):+.1f}% | "
                     f"{100 * statistics.median(inside[label]):.2f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="overhead", choices=("overhead", "calibrate"))
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    p.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=NETS, help="calibrate: which configs")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.what == "calibrate":
        text, out = calibrate(args.sizes, args.widths, tuple(args.nets)), RESULTS / "health_calibration.md"
    else:
        text, out = overhead(args.steps, args.repeats), RESULTS / "health.md"
    print(text)
    out.write_text(text)


if __name__ == "__main__":
    main()
