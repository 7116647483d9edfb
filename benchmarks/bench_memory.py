"""Training memory: `vggnet summary --memory`'s activation estimate against the measured peak,
and what per-block activation checkpointing (train.checkpoint_activations) saves and costs.

    python benchmarks/bench_memory.py      # -> results/memory.md

Small widths so it runs on a CPU in well under a minute: the activation memory scales with
width x batch x pixels, the checkpointing ratio is what carries over. Peak: PyTorch's profiler
(CPU allocations during one training forward pass and loss). Time: median of 5 training steps
(forward, backward, SGD step) after 2 warm-up steps, one thread.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from vggnet.model.memory import activation_bytes, measured_activation_peak
from vggnet.model.vgg import build_model

RESULTS = Path(__file__).parent / "results"
CASES = [("D", True, 0.25, 64, 16), ("D", False, 0.25, 128, 4), ("E", True, 0.125, 224, 2)]


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int = 5) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    times = []
    for i in range(repeats + 2):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    rows = ["| case | estimate | measured | estimate / measured | checkpointed peak | memory saved | step time "
            "plain / checkpointed |", "|---|---|---|---|---|---|---|"]
    for name, bn, width, size, batch in CASES:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)
        model = build_model(name, num_classes=10, batch_norm=bn, head="gap", width=width, seed=0)
        estimate, plain = activation_bytes(model, size, batch), measured_activation_peak(model, x, y)
        t_plain = step_time(model, x, y)
        model.checkpoint_activations = True
        ckpt = measured_activation_peak(model, x, y)
        t_ckpt = step_time(model, x, y)
        mib = 2**20
        rows.append(f"| {name}{'-BN' if bn else ''} width {width}, {size} px, batch {batch} | {estimate / mib:.1f} MiB "
                    f"| {plain / mib:.1f} MiB | {estimate / plain:.2f} | {ckpt / mib:.1f} MiB | {1 - ckpt / plain:.0%} "
                    f"| {t_plain * 1e3:.0f} / {t_ckpt * 1e3:.0f} ms (+{t_ckpt / t_plain - 1:.0%}) |")
    load = os.getloadavg()[0]
    text = "\n".join([f"# Training memory ({platform.machine()}, {os.cpu_count()} cores, load {load:.2f}, "
                      f"torch {torch.__version__}, one thread)", "", *rows, ""])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
