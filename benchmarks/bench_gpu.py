"""VGG-16 at 224 on synthetic data: images/s and MFU, vggnet's training step vs a plain loop.

MFU = model FLOPs per second / the measured bf16 matrix-multiply peak of this device, with
model FLOPs = 6 x MACs per image (forward 2x, backward 4x). Side by side in one run:
- plain: torchvision vgg16, fp32 (TF32 allowed), contiguous NCHW, SGD;
- vggnet: the same network built by vggnet, stepped with the trainer's defaults (bf16 autocast,
  channels_last).

    python benchmarks/bench_gpu.py                       # on a GPU
    python benchmarks/bench_gpu.py --batch 4 --steps 3   # a CPU smoke run (no meaningful MFU)

Writes benchmarks/results/gpu.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from vggnet.model.vgg import build_model, count_macs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, n: int = 8192, repeats: int = 20) -> float:
    """Measured bf16 matmul FLOP/s: the denominator of MFU."""
    if device.type != "cuda":
        n, repeats = 1024, 3
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def rate(step, batch: int, steps: int, device: torch.device) -> float:  # noqa: ANN001
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def plain_step(device: torch.device, batch: int):  # noqa: ANN201
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    model = torchvision.models.vgg16(weights=None).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def vggnet_step(device: torch.device, batch: int):  # noqa: ANN201
    model = build_model("D", num_classes=1000).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    with torch.device("meta"):
        flops_per_image = 6 * count_macs(build_model("D", init=None), 224)
    peak = matmul_peak(device)
    rows = []
    for name, make in (("plain PyTorch: torchvision vgg16, fp32/TF32", plain_step),
                       ("vggnet VGG-D, bf16 autocast + channels_last", vggnet_step)):
        images_s = rate(make(device, args.batch), args.batch, args.steps, device)
        rows.append((name, images_s, images_s * flops_per_image / peak))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu"
    lines = [f"### VGG-16 at 224, synthetic data, batch {args.batch} ({name}, torch {torch.__version__})", "",
             f"Measured bf16 matmul peak: {peak / 1e12:.0f} TFLOP/s; model FLOPs per image "
             f"{flops_per_image / 1e9:.1f} G (6 x MACs).", "",
             "| loop | images/s (median) | ratio | MFU |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {r:.0f} | {r / rows[0][1]:.2f}x | {100 * m:.0f}% |" for n, r, m in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).parent / "results" / "gpu.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
