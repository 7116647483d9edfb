"""Data-stage throughput, side by side in one run (same batch size, same augmentation).

1. Fashion-MNIST training batches/s: vggnet's in-memory loader vs torchvision FashionMNIST +
   DataLoader(num_workers=2) + per-image Pad, RandomCrop, RandomHorizontalFlip, ToTensor, Normalize.
2. A folder of generated 500x375 JPEGs, 224 crops: vggnet's folder loader (scale jittering
   S ~ U[256, 512]) vs torchvision ImageFolder + RandomResizedCrop(224) (and, for the same
   augmentation, torchvision v2 RandomShortestSize(256..512) + RandomCrop(224)), same workers.

Prints medians and ratios and a markdown section, also written to benchmarks/results/data.md.
Usage: python benchmarks/bench_data.py [--repeats 3] [--jpeg-repeats 2] [--images 2000] [--workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T

from vggnet.data import augment, formats, loaders, sources
from vggnet.config import DataConfig

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what platform knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def machine() -> str:
    cpu = cpu_name()
    load = ", load average {:.1f} at start (a shared machine lowers both columns)".format(os.getloadavg()[0])
    return (f"{cpu}, {os.cpu_count()} cores{load}, {platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, torchvision {torchvision.__version__}, Pillow {PIL.__version__}")


def timed_batches(iterator, limit: int | None = None, skip: int = 0) -> tuple[int, int, float]:  # noqa: ANN001
    """(batches, images, seconds) over the iterator, not timing the first `skip` batches."""
    n = images = 0
    start = time.perf_counter()
    for k, (x, _) in enumerate(iterator):
        if k == skip:
            start = time.perf_counter()
        if k >= skip:
            n += 1
            images += len(x)
        if limit is not None and n >= limit:
            break
    return n, images, time.perf_counter() - start


def bench_fashion(repeats: int, batch: int, workers: int) -> dict:
    cfg = DataConfig(name="fashion-mnist", image_size=28, pad=4, flip=True, val_fraction=0.0, download=False)
    ds = sources.get(cfg)
    stats = augment.compute_stats(ds.train)
    ours = loaders.make_loader(ds, "train", cfg, train=True, batch_size=batch, stats=stats, channels=1)
    ours_bps = []
    for epoch in range(repeats + 1):
        n, _, sec = timed_batches(ours.epoch(epoch))
        if epoch > 0:  # epoch 0 warms the allocator; it is reported separately
            ours_bps.append(n / sec)
        else:
            first = n / sec

    with tempfile.TemporaryDirectory() as tmp:  # torchvision wants FashionMNIST/raw/ with the files unzipped
        raw = Path(tmp) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in FASHION_DIR.glob("*.gz"):
            with gzip.open(gz) as src, open(raw / gz.stem, "wb") as dst:
                shutil.copyfileobj(src, dst)
        tf = T.Compose([T.Pad(4), T.RandomCrop(28), T.RandomHorizontalFlip(), T.ToTensor(),
                        T.Normalize(stats.mean, stats.std)])
        tv = torchvision.datasets.FashionMNIST(tmp, train=True, transform=tf, download=False)
        tv_bps = []
        for _ in range(repeats):
            dl = torch.utils.data.DataLoader(tv, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
            n, _, sec = timed_batches(iter(dl), limit=150, skip=5)
            tv_bps.append(n / sec)
    return {"ours": statistics.median(ours_bps), "ours_first_epoch": first, "torchvision": statistics.median(tv_bps)}


def make_jpegs(root: Path, count: int, classes: int = 10) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / "train" / f"class{i % classes:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))  # smooth, photo-like content
        big = np.asarray(small.resize((500, 375), Image.BICUBIC), dtype=np.int16)
        big = np.clip(big + rng.integers(-12, 13, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(big).save(folder / f"img{i:05d}.JPEG", quality=90)


def bench_jpeg(repeats: int, count: int, batch: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_jpegs(root, count)
        gen_s = time.perf_counter() - t0
        cfg = DataConfig(name="imagefolder", dir=str(root), image_size=224, scale=[256, 512], flip=True,
                         val_fraction=0.0, workers=workers, download=False)
        ds = sources.get(cfg)
        stats = augment.compute_stats(ds.train, max_images=500)
        ours = loaders.make_loader(ds, "train", cfg, train=True, batch_size=batch, stats=stats, channels=3)
        norm = T.Normalize(stats.mean, stats.std)
        rrc = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm])
        from torchvision.transforms import v2

        jitter = v2.Compose([v2.PILToTensor(), v2.RandomShortestSize(list(range(256, 513)), antialias=True),
                             v2.RandomCrop(224), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                             v2.Normalize(stats.mean, stats.std)])
        results: dict[str, list[float]] = {"ours": [], "torchvision_rrc": [], "torchvision_jitter": []}
        for r in range(repeats):
            _, n, sec = timed_batches(ours.epoch(r))
            results["ours"].append(n / sec)
            for key, tf in (("torchvision_rrc", rrc), ("torchvision_jitter", jitter)):
                tv = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
                dl = torch.utils.data.DataLoader(tv, batch_size=batch, shuffle=True, num_workers=workers,
                                                 drop_last=True)
                _, n, sec = timed_batches(iter(dl))
                results[key].append(n / sec)
    out = {k: statistics.median(v) for k, v in results.items()}
    out["generate_s"] = gen_s
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jpeg-repeats", type=int, default=2)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128, help="Fashion-MNIST batch size")
    ap.add_argument("--jpeg-batch", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "data.md"))
    args = ap.parse_args()
    torch.manual_seed(0)
    lines = ["## Data stage", "", f"Machine: {machine()}.", ""]
    if formats.find_dir([FASHION_DIR], [f for p in formats.IDX_FILES.values() for f in p]):
        f = bench_fashion(args.repeats, args.batch, args.workers)
        ratio = f["ours"] / f["torchvision"]
        print(f"fashion-mnist: ours {f['ours']:.0f} batches/s, torchvision {f['torchvision']:.1f} batches/s, {ratio:.1f}x")
        lines += [
            f"### Fashion-MNIST training batches/s (batch {args.batch}; pad 4 + random 28 crop + flip + normalise)", "",
            "| loader | batches/s | images/s |", "|---|---:|---:|",
            f"| vggnet in-memory (uint8 tensor, batched ops, no workers) | {f['ours']:.0f} | {f['ours'] * args.batch:,.0f} |",
            f"| torchvision FashionMNIST + DataLoader(num_workers={args.workers}) + per-image transforms "
            f"| {f['torchvision']:.1f} | {f['torchvision'] * args.batch:,.0f} |", "",
            f"Ratio: **{ratio:.1f}x** (target >= 10x). Medians of {args.repeats} epochs (ours) / {args.repeats} runs "
            f"of 150 batches after 5 warm-up batches (torchvision). vggnet's first epoch: {f['ours_first_epoch']:.0f} "
            "batches/s.", "",
        ]
    else:
        lines += ["Fashion-MNIST benchmark skipped: /usr/share/datasets/fashion-mnist not found "
                  "(`apt install dataset-fashion-mnist`).", ""]
    j = bench_jpeg(args.jpeg_repeats, args.images, args.jpeg_batch, args.workers)
    r1, r2 = j["ours"] / j["torchvision_rrc"], j["ours"] / j["torchvision_jitter"]
    print(f"jpeg folder: ours {j['ours']:.0f} img/s, torchvision RandomResizedCrop {j['torchvision_rrc']:.0f} img/s "
          f"({r1:.2f}x), torchvision scale jitter {j['torchvision_jitter']:.0f} img/s ({r2:.2f}x)")
    lines += [
        f"### Image folder: {args.images} generated 500x375 JPEGs, 224 crops, batch {args.jpeg_batch}, "
        f"{args.workers} workers", "",
        "| loader | images/s | vggnet is |", "|---|---:|---:|",
        f"| vggnet folder loader, S ~ U[256, 512] + random 224 crop + flip + normalise | {j['ours']:.0f} | |",
        f"| torchvision ImageFolder + RandomResizedCrop(224) + flip + ToTensor + Normalize "
        f"| {j['torchvision_rrc']:.0f} | {r1:.2f}x |",
        f"| torchvision ImageFolder + v2 RandomShortestSize(256..512) + RandomCrop(224) + flip (same augmentation) "
        f"| {j['torchvision_jitter']:.0f} | {r2:.2f}x |", "",
        f"Medians of {args.jpeg_repeats} full epochs each (worker start-up included for all). Target: no slower than "
        f"RandomResizedCrop. Generating the JPEGs took {j['generate_s']:.0f} s (not timed above).", "",
        "Rerun: `python benchmarks/bench_data.py`.", "",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
