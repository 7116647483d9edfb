"""The dataset registry: one name per dataset, each giving uint8 tensors or a file index.

`get(cfg)` looks the name up, reads the set from its original files (see `formats.py` for
where it searches), carves a seeded validation split from train when the set has none
(plateau LR and early stopping need one) and applies `cfg.subset`.
"""

from __future__ import annotations

import difflib
import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vggnet.data import formats
from vggnet.errors import ConfigError, DataError, VGGNetWarning
from vggnet.config import DataConfig


@dataclass
class Split:
    """Labels plus either the images (in-memory sets) or the image files (folder sets)."""

    labels: torch.Tensor  # int64 [N]
    images: torch.Tensor | None = None  # uint8 [N, C, H, W] for in-memory sets
    paths: list[Path] | None = None  # for file-based sets (imagefolder, caltech256)
    boxes: torch.Tensor | None = None  # float [N, 4] (x1, y1, x2, y2) px: localisation sets (one box each)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor) -> Split:
        """The images at these positions, in this order."""
        index = index.long()
        return Split(
            labels=self.labels[index],
            images=None if self.images is None else self.images[index],
            paths=None if self.paths is None else [self.paths[i] for i in index.tolist()],
            boxes=None if self.boxes is None else self.boxes[index],
        )


@dataclass
class Dataset:
    name: str
    classes: list[str]
    channels: int  # 1 or 3 (native)
    train: Split
    val: Split
    test: Split
    in_memory: bool
    skipped: dict[Path, str] = field(default_factory=dict)  # unreadable files met by iter_raw, with why

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """Native (C, H, W) of in-memory sets; None for folders (sizes vary)."""
        return tuple(self.train.images.shape[1:]) if self.train.images is not None else None


Builder = Callable[[DataConfig, int], Dataset]
_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder `(cfg, seed) -> Dataset` (val may be empty: it is then carved)."""

    def add(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ConfigError(f"dataset {name!r} is already registered; pick another name")
        _REGISTRY[name] = fn
        return fn

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def seed_of(*parts: object) -> int:
    """A 63-bit seed mixed from any values (stable across runs and machines)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _generator(*parts: object) -> torch.Generator:
    return torch.Generator().manual_seed(seed_of(*parts))


def carve(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Seeded, class-stratified (train, val) split: round(fraction * n_c) of each class to val."""
    n = len(split)
    if fraction <= 0 or n == 0:
        return split, split.take(torch.zeros(0, dtype=torch.long))
    perm = torch.randperm(n, generator=_generator("val", seed))
    order = perm[torch.sort(split.labels[perm], stable=True).indices]
    labels = split.labels[order]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    k = torch.clamp(torch.round(counts.double() * fraction).long(), max=torch.clamp(counts - 1, min=0))
    pos = torch.arange(n) - starts[labels]
    is_val = pos < k[labels]
    return split.take(torch.sort(order[~is_val]).values), split.take(torch.sort(order[is_val]).values)


def get(cfg: DataConfig, *, seed: int = 0) -> Dataset:
    """The dataset cfg.name with train/val/test splits (val carved from train if absent)."""
    if cfg.name not in _REGISTRY:
        near = difflib.get_close_matches(cfg.name, names(), n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"choose one of {', '.join(names())}"
        raise ConfigError(f"unknown dataset data.name={cfg.name!r}; {hint}")
    formats.MAX_PIXELS = cfg.max_pixels  # the run's limit, before any image (or worker) is opened
    ds = _REGISTRY[cfg.name](cfg, seed)
    if len(ds.val) == 0:
        ds.train, ds.val = carve(ds.train, cfg.val_fraction, seed)
    if cfg.subset is not None and cfg.subset < len(ds.train):
        keep = torch.randperm(len(ds.train), generator=_generator("subset", seed))[: cfg.subset]
        ds.train = ds.train.take(torch.sort(keep).values)
    return ds


def class_balance(ds: Dataset) -> dict[str, dict[str, float]]:
    """Per split: images per class (min, max, mean) and the max/min ratio."""
    out = {}
    for name in ("train", "val", "test"):
        split = getattr(ds, name)
        counts = torch.bincount(split.labels, minlength=len(ds.classes)).double()
        if len(split) == 0:
            continue
        out[name] = {
            "images": float(counts.sum()), "min": float(counts.min()), "max": float(counts.max()),
            "mean": float(counts.mean()), "imbalance": float(counts.max() / counts.min().clamp(min=1)),
            "empty_classes": float((counts == 0).sum()),
        }
    return out


def balance_report(ds: Dataset) -> str:
    """A short text table of class_balance: imbalance makes a net predict only the big classes."""
    lines = [f"{ds.name}: {len(ds.classes)} classes", "split   images    min    max   mean  max/min  empty"]
    for name, s in class_balance(ds).items():
        lines.append(f"{name:<6} {s['images']:>7.0f} {s['min']:>6.0f} {s['max']:>6.0f} {s['mean']:>6.1f} "
                     f"{s['imbalance']:>8.2f} {s['empty_classes']:>6.0f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- in-memory sets


def _locate(name: str, cfg: DataConfig, required: list[str], layouts: list[str], wanted: str,
            archive: str | None = None) -> Path:
    """Find the files (data.dir, $VGGNET_DATA, system, cache), downloading when allowed."""
    places = formats.search_roots(name, cfg.dir, layouts)
    if archive:
        for place in places:
            if not formats.find_dir([place], required) and (place / archive).is_file():
                formats.extract_if_archived(place, archive)
    found = formats.find_dir(places, required)
    if found is not None:
        return found
    error = None
    if cfg.download:
        target = formats.download_dir(name, cfg.dir)
        try:
            formats.download(name, target)
            found = formats.find_dir([target] + [target / sub for sub in layouts], required)
            if found is not None:
                return found
            error = f"files not in {target} after download"
        except (OSError, RuntimeError, ValueError) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise DataError(formats.missing_message(name, places, wanted, error))


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def _idx_set(name: str, classes: list[str]) -> Builder:
    def build(cfg: DataConfig, seed: int) -> Dataset:
        required = [f for pair in formats.IDX_FILES.values() for f in pair]
        torchvision_layout = {"fashion-mnist": "FashionMNIST/raw", "mnist": "MNIST/raw"}[name]
        folder = _locate(name, cfg, required, [torchvision_layout],
                         "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                         "t10k-labels-idx1-ubyte.gz")
        x, y = formats.read_idx_split(folder, "train", len(classes))
        xt, yt = formats.read_idx_split(folder, "test", len(classes))
        empty = Split(labels=y[:0], images=x[:0])
        return Dataset(name, classes, 1, Split(y, x), empty, Split(yt, xt), in_memory=True)

    return build


register("fashion-mnist")(_idx_set("fashion-mnist", FASHION_CLASSES))
register("mnist")(_idx_set("mnist", [str(i) for i in range(10)]))


def _cifar(name: str) -> Builder:
    ten = name == "cifar10"
    sub = "cifar-10-batches-py" if ten else "cifar-100-python"
    train_files = [f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]
    archive = "cifar-10-python.tar.gz" if ten else "cifar-100-python.tar.gz"

    def build(cfg: DataConfig, seed: int) -> Dataset:
        required = train_files + ["test_batch" if ten else "test"]
        folder = _locate(name, cfg, required, [sub], f"{sub}/ ({', '.join(required)}) or {archive}", archive)
        label_key = "labels" if ten else "fine_labels"
        n_classes = 10 if ten else 100
        x, y = formats.read_cifar(folder, train_files, label_key, n_classes)
        xt, yt = formats.read_cifar(folder, required[-1:], label_key, n_classes)
        classes = formats.read_cifar_names(folder / ("batches.meta" if ten else "meta"),
                                           "label_names" if ten else "fine_label_names")
        if not classes or len(classes) != n_classes:
            classes = [str(i) for i in range(n_classes)]
        empty = Split(labels=y[:0], images=x[:0])
        return Dataset(name, classes, 3, Split(y, x), empty, Split(yt, xt), in_memory=True)

    return build


register("cifar10")(_cifar("cifar10"))
register("cifar100")(_cifar("cifar100"))


@register("synthetic")
def _synthetic(cfg: DataConfig, seed: int) -> Dataset:
    """Random RGB images of cfg.image_size with a faint per-class colour, so a net can learn them."""
    g = _generator("synthetic", seed)
    k, size = cfg.num_classes, cfg.image_size
    palette = torch.randint(40, 216, (k, 3, 1, 1), generator=g)

    def make(n: int) -> Split:
        labels = torch.randint(0, k, (n,), generator=g)
        noise = torch.randint(-40, 41, (n, 3, size, size), generator=g)
        return Split(labels, (palette[labels] + noise).clamp(0, 255).to(torch.uint8))

    train, test = make(cfg.num_train), make(cfg.num_test)
    empty = train.take(torch.arange(0))
    return Dataset("synthetic", [f"class{i}" for i in range(k)], 3, train, empty, test, in_memory=True)


# ---------------------------------------------------------------- folder sets


def _folder_root(name: str, cfg: DataConfig, layout: str, looks_right: Callable[[Path], bool]) -> Path:
    """The first searched place that looks like the set; else data.dir itself (to name its layout)."""
    places = formats.search_roots(name, cfg.dir)[:-1]  # no download cache: these are never downloaded
    for place in places:
        if place.is_dir() and looks_right(place):
            return place
    if cfg.dir and Path(cfg.dir).expanduser().is_dir():
        return Path(cfg.dir).expanduser()
    raise DataError(f"{name} not found (searched {', '.join(map(str, places))}); point data.dir (--data-dir) "
                    f"or ${formats.ENV_VAR} at a folder laid out as {layout}")


@register("imagefolder")
def _imagefolder(cfg: DataConfig, seed: int) -> Dataset:
    """ImageNet-style root/train/<class>/*; root/val/ (class folders, or flat files + labels file);
    optional root/test/. Without test/, val/ is the test set and val is carved from train."""
    layout = "train/<class>/<image> and val/<class>/<image> (or val/<image> plus val/labels.txt)"
    root = _folder_root("imagefolder", cfg, layout, lambda p: (p / "train").is_dir())
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder; expected the layout {layout}")
    classes, paths, labels = formats.scan_class_folders(root / "train")
    if not paths:
        raise DataError(f"{root / 'train'} has no class folders; expected the layout {layout}")
    train = Split(torch.tensor(labels), paths=paths)

    def split_of(folder: Path) -> Split:
        if any(d.is_dir() for d in folder.iterdir()):
            _, p, y = formats.scan_class_folders(folder, classes)
        else:
            p, y = formats.scan_flat_split(folder, classes)
        return Split(torch.tensor(y, dtype=torch.int64), paths=p)

    val_dir, test_dir = root / "val", root / "test"
    empty = Split(train.labels[:0], paths=[])
    if test_dir.is_dir():
        val = split_of(val_dir) if val_dir.is_dir() else empty
        test = split_of(test_dir)
    else:
        val, test = empty, split_of(val_dir) if val_dir.is_dir() else empty
    return Dataset("imagefolder", classes, 3, train, val, test, in_memory=False)


@register("caltech101")
def _caltech101(cfg: DataConfig, seed: int) -> Dataset:
    """101_ObjectCategories/<class>/image_NNNN.jpg (102 folders with BACKGROUND_Google), split as
    caltech256: cfg.train_per_class random images per class train, the rest test."""
    root = _folder_root("caltech101", cfg, "101_ObjectCategories/<class>/image_0001.jpg",
                        lambda p: (p / "101_ObjectCategories").is_dir())
    folder = root / "101_ObjectCategories" if (root / "101_ObjectCategories").is_dir() else root
    classes, paths, labels = formats.scan_class_folders(folder)
    if not paths:
        raise DataError(f"{folder} has no class folders; expected 101_ObjectCategories/<class>/<image>")
    labels_t = torch.tensor(labels, dtype=torch.int64)
    train_idx, test_idx = [], []
    for label in range(len(classes)):
        idx = (labels_t == label).nonzero()[:, 0]
        order = idx[torch.randperm(len(idx), generator=_generator("caltech101", seed, label))]
        train_idx.append(order[:cfg.train_per_class])
        test_idx.append(order[cfg.train_per_class:])
    whole = Split(labels_t, paths=paths)
    train, test = whole.take(torch.cat(train_idx)), whole.take(torch.cat(test_idx))
    return Dataset("caltech101", classes, 3, train, train.take(torch.zeros(0, dtype=torch.long)), test,
                   in_memory=False)


@register("caltech256")
def _caltech256(cfg: DataConfig, seed: int) -> Dataset:
    """The paper's protocol: cfg.train_per_class random images per class (seeded) train, the rest test."""
    root = _folder_root("caltech256", cfg, "256_ObjectCategories/001.ak47/001_0001.jpg ... 257.clutter/",
                        lambda p: (p / "256_ObjectCategories").is_dir() or any(
                            formats.CALTECH_DIR.match(d.name) for d in p.iterdir() if d.is_dir()))
    classes, files = formats.scan_caltech256(root, cfg.clutter)
    n = cfg.train_per_class
    train_p, train_y, test_p, test_y, short = [], [], [], [], []
    for label, imgs in enumerate(files):
        order = torch.randperm(len(imgs), generator=_generator("caltech256", seed, label)).tolist()
        if len(imgs) <= n:
            short.append(classes[label])
        cut = min(n, len(imgs))
        train_p += [imgs[i] for i in order[:cut]]
        test_p += [imgs[i] for i in order[cut:]]
        train_y += [label] * cut
        test_y += [label] * (len(imgs) - cut)
    if short:
        warnings.warn(f"caltech256: {len(short)} classes have no more than {n} images, none left for test "
                      f"({', '.join(short[:5])})", VGGNetWarning, stacklevel=2)
    train = Split(torch.tensor(train_y, dtype=torch.int64), paths=train_p)
    test = Split(torch.tensor(test_y, dtype=torch.int64), paths=test_p)
    return Dataset("caltech256", classes, 3, train, Split(train.labels[:0], paths=[]), test, in_memory=False)

