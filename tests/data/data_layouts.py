"""Small datasets written in their original on-disk layouts (idx .gz, CIFAR pickles, folders)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from vggnet.data import formats
from vggnet.config import DataConfig


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def make_idx_dir(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        img, lbl = formats.IDX_FILES[split]
        write_idx(root / f"{img}.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{lbl}.gz", np.arange(n) % 10)
    return root


def write_cifar_batch(path: Path, n: int, label_key: bytes, classes: int, rng: np.random.Generator) -> None:
    batch = {b"batch_label": b"batch", label_key: [int(i % classes) for i in range(n)],
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [f"img{i}.png".encode() for i in range(n)]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def make_cifar10(root: Path, per_batch: int = 12) -> Path:
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", per_batch, b"labels", 10, rng)
    write_cifar_batch(folder / "test_batch", per_batch, b"labels", 10, rng)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return root


def make_cifar100(root: Path) -> Path:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    write_cifar_batch(folder / "train", 300, b"fine_labels", 100, rng)
    write_cifar_batch(folder / "test", 100, b"fine_labels", 100, rng)
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}, f, protocol=2)
    return root


def write_jpeg(path: Path, w: int, h: int, seed: int, mode: str = "RGB") -> None:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path, quality=85)


def write_corrupt(folder: Path) -> list[Path]:
    """A truncated JPEG and a text file with an image extension."""
    good = folder / "truncated_src.jpg"
    write_jpeg(good, 60, 50, 99)
    data = good.read_bytes()
    good.unlink()
    bad1 = folder / "zz_truncated.jpg"
    bad1.write_bytes(data[: len(data) // 3])
    bad2 = folder / "zz_notanimage.png"
    bad2.write_text("this is not an image")
    return [bad1, bad2]


def make_imagefolder(root: Path, classes: int = 3, per_class: int = 6, flat_val: bool = False,
                     corrupt: bool = True) -> Path:
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            write_jpeg(folder / f"img{i}.JPEG", 48 + 4 * i, 40 + 2 * i, seed=c * 100 + i,
                       mode="L" if i == 0 else "RGB")
        (folder / "notes.txt").write_text("ignored")
    if corrupt:
        write_corrupt(root / "train" / "class0")
    val = root / "val"
    val.mkdir()
    lines = []
    for c in range(classes):
        for i in range(2):
            if flat_val:
                write_jpeg(val / f"val_{c}_{i}.png", 40, 40, seed=1000 + c * 10 + i)
                lines.append(f"val_{c}_{i}.png class{c}")
            else:
                (val / f"class{c}").mkdir(exist_ok=True)
                write_jpeg(val / f"class{c}" / f"v{i}.jpg", 40, 44, seed=1000 + c * 10 + i)
    if flat_val:
        (val / "labels.txt").write_text("\n".join(lines) + "\n")
    return root


def make_caltech(root: Path, counts: tuple[int, ...] = (8, 10, 12), clutter: int = 9) -> Path:
    base = root / "256_ObjectCategories"
    names = ["ak47", "american-flag", "backpack"]
    for k, n in enumerate(counts):
        folder = base / f"{k + 1:03d}.{names[k]}"
        folder.mkdir(parents=True)
        for i in range(n):
            write_jpeg(folder / f"{k + 1:03d}_{i + 1:04d}.jpg", 40, 36, seed=k * 100 + i)
    folder = base / "257.clutter"
    folder.mkdir()
    for i in range(clutter):
        write_jpeg(folder / f"257_{i + 1:04d}.jpg", 40, 36, seed=9000 + i)
    return root


def cfg(**kw) -> DataConfig:  # noqa: ANN003
    kw.setdefault("download", False)
    return DataConfig(**kw)
