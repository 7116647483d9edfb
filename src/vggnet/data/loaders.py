"""Batches for training and evaluation.

In-memory sets (Fashion-MNIST, MNIST, CIFAR, synthetic) live on the device as one uint8 tensor
and are augmented there a batch at a time: no per-image Python, no worker processes. Image
folders stream through DataLoader workers that decode, rescale and crop (uint8), then get the
same batched flip / colour shift / normalisation on the device.

Everything random depends only on (seed, epoch, rank, batch index) - and for folder images on
(seed, epoch, image index) - so `epoch(e, start_batch=k)` replays batches k, k+1, ... of a full
epoch bit for bit, whatever the number of workers.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from vggnet.data import augment as A
from vggnet.data.folder import EpochBatches, FolderItems, collate
from vggnet.data.formats import load_image, skip_reason
from vggnet.data.sources import Dataset, Split, seed_of
from vggnet.errors import ConfigError, DataError, VGGNetWarning
from vggnet.config import DataConfig

__all__ = ["Loader", "make_loader", "iter_raw", "load_image", "eval_scale", "describe_skipped"]


def describe_skipped(skipped: dict[Path, str], examples: int = 3) -> str:
    """"3 unreadable image files (2 empty (0 bytes), 1 over data.max_pixels: a.png, b.png, c.png)"."""
    counts: dict[str, int] = {}
    for why in skipped.values():
        counts[why or "not a readable image"] = counts.get(why or "not a readable image", 0) + 1
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    names = ", ".join(str(p) for p in list(skipped)[:examples]) + (", ..." if len(skipped) > examples else "")
    return f"{len(skipped)} unreadable image file{'s' if len(skipped) != 1 else ''} ({why}: {names})"


def eval_scale(cfg: DataConfig) -> int | None:
    """Q for single-scale evaluation: data.test_scale, else S (fixed), else the paper's
    Q = (Smin + Smax) / 2 for jittered S, else None (no rescale)."""
    if cfg.test_scale is not None:
        return cfg.test_scale
    if cfg.scale:
        return (min(cfg.scale) + max(cfg.scale)) // 2
    return None


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Batch augmentation on CPU in one intra-op thread: the tensors are small, and on a busy
    machine OpenMP's thread hand-offs cost more than the work (measured 15x on 2 cores)."""
    old = torch.get_num_threads()
    if device.type != "cpu" or old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Loader:
    """One rank's batches of one split. Subclasses implement `epoch`."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, rank: int, world_size: int,
                 drop_last: bool | None) -> None:
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} is outside world size {world_size}")
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        per_rank = n // world_size if shuffle else len(range(rank, n, world_size))
        if drop_last is None:  # training drops the ragged last batch, unless that leaves nothing
            drop_last = shuffle and per_rank >= batch_size
        self._batches = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
        self.num_images = min(per_rank, self._batches * batch_size)
        self.skipped = 0

    def __len__(self) -> int:
        return self._batches

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's image indices for the epoch: a disjoint 1/world_size of one permutation."""
        if not self.shuffle:
            return torch.arange(self.rank, self.n, self.world_size)[: self.num_images]
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed_of("order", self.seed, epoch)))
        return perm[: (self.n // self.world_size) * self.world_size][self.rank :: self.world_size][: self.num_images]

    def generator(self, epoch: int, batch: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed_of("augment", self.seed, epoch, self.rank, batch))

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError


class _Finish:
    """The batched, on-device tail shared by both loaders: flip, colour shift, channels, normalise,
    random erasing."""

    def __init__(self, cfg: DataConfig, train: bool, stats: A.Stats, native: int, channels: int) -> None:
        self.flip = train and cfg.flip
        self.shift = cfg.colour_shift if train and native == 3 and cfg.colour_shift > 0 else 0.0
        if self.shift and stats.eigval is None:
            raise ConfigError("data.colour_shift needs the RGB PCA in the statistics; recompute them with compute_stats")
        self.stats, self.mode, self.channels = stats, cfg.normalize, channels
        self.erase = cfg.erase if train else 0.0

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.flip:
            x = A.hflip(x, g)
        if self.shift:
            x = A.colour_shift(x, self.stats.eigval, self.stats.eigvec, self.shift, g)
        x = A.convert_channels(x, self.channels)
        x = A.normalize(x, self.stats, self.mode)
        return A.random_erase(x, self.erase, g) if self.erase else x


class MemoryLoader(Loader):
    """The whole split on the device as uint8; crops, pads and flips by index arithmetic."""

    def __init__(self, split: Split, cfg: DataConfig, train: bool, stats: A.Stats, channels: int,
                 device: torch.device, **kw) -> None:  # noqa: ANN003
        super().__init__(len(split), shuffle=train, **kw)
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.cfg, self.train, self.size = cfg, train, cfg.image_size
        self.finish = _Finish(cfg, train, stats, self.images.shape[1], channels)

    def _geometry(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg, size = self.cfg, self.size
        small = max(x.shape[-2:]) <= size
        if self.train:
            if cfg.scale:
                return A.scaled_random_crop(x, A.sample_scales(len(x), cfg.scale, g), size, g)
            if small:
                return A.pad_random_crop(A.centre_pad(x, size), cfg.pad, g)
            return A.random_crop(x, size, g)
        q = eval_scale(cfg)
        if q is not None:
            return A.centre_crop(A.rescale(x, q), size)
        return A.centre_pad(x, size) if small else A.centre_crop(x, size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order(epoch).to(self.images.device)
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            g = self.generator(epoch, b)
            with _one_thread(self.images.device):
                x = self.finish(self._geometry(self.images[idx], g), g)
            yield x, self.labels[idx]


class FolderLoader(Loader):
    """Image files decoded, rescaled and cropped in DataLoader workers; the tail batched on device."""

    def __init__(self, split: Split, cfg: DataConfig, train: bool, stats: A.Stats, channels: int,
                 device: torch.device, **kw) -> None:  # noqa: ANN003
        super().__init__(len(split), shuffle=train, **kw)
        size = cfg.image_size
        scale = (cfg.scale or [size]) if train else [eval_scale(cfg) or size]
        self.items = FolderItems(split.paths, split.labels, size, scale, train, self.seed)
        self.device, self.workers = device, cfg.workers
        self.finish = _Finish(cfg, train, stats, 3, channels)
        self.bad: dict[Path, str] = {}  # unreadable files met so far, with why

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batches = EpochBatches(self.order(epoch), self.batch_size, start_batch, len(self), epoch)
        loader = torch.utils.data.DataLoader(
            self.items, batch_sampler=batches, num_workers=self.workers, collate_fn=collate,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
        )
        known = len(self.bad)
        try:
            for b, (x, y, bad) in enumerate(loader, start=start_batch):
                self._record(bad)
                if len(x) == 0:
                    continue  # every file of the batch unreadable
                x = x.to(self.device, non_blocking=True)
                with _one_thread(self.device):
                    x = self.finish(x, self.generator(epoch, b))
                yield x, y.to(self.device, non_blocking=True)
        finally:
            if len(self.bad) > known:
                new = dict(list(self.bad.items())[known:])
                warnings.warn(f"skipped {describe_skipped(new)}; {self.skipped} in all", VGGNetWarning, stacklevel=2)

    def _record(self, bad: list[tuple[int, str]]) -> None:
        for i, why in bad:
            self.bad.setdefault(self.items.paths[i], why)
        self.skipped = len(self.bad)


def make_loader(ds: Dataset, split: str, cfg: DataConfig, *, train: bool, batch_size: int,
                stats: A.Stats, channels: int, device: torch.device | str = "cpu", seed: int = 0,
                rank: int = 0, world_size: int = 1, drop_last: bool | None = None) -> Loader:
    """A loader of ds's split ("train" | "val" | "test"); train=True augments and shuffles."""
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    data: Split = getattr(ds, split)
    if len(data) == 0:
        raise DataError(f"{ds.name} has an empty {split} split; raise data.val_fraction or add {split}/ files")
    if channels not in (1, 3):
        raise ConfigError(f"model input channels must be 1 or 3, got {channels}")
    A.check_scale(cfg.scale, cfg.image_size)
    if channels != ds.channels:
        warnings.warn(f"{ds.name} images have {ds.channels} channel(s), the model takes {channels}: converting "
                      f"({'gray repeated to RGB' if channels == 3 else 'RGB to luminance'})", VGGNetWarning,
                      stacklevel=2)
    kw = dict(batch_size=batch_size, seed=seed, rank=rank, world_size=world_size, drop_last=drop_last)
    cls = MemoryLoader if ds.in_memory else FolderLoader
    return cls(data, cfg, train, stats, channels, torch.device(device), **kw)


def iter_raw(ds: Dataset, split: str, batch_size: int) -> Iterator[tuple[list[torch.Tensor] | torch.Tensor, torch.Tensor]]:
    """Un-augmented uint8 images in file order with their labels: one stacked tensor per batch for
    in-memory sets; a list of native-size CHW tensors for folders (unreadable files skipped, counted
    in ds.skipped, and named in a warning)."""
    data: Split = getattr(ds, split)
    if data.images is not None:
        for i in range(0, len(data), batch_size):
            yield data.images[i : i + batch_size], data.labels[i : i + batch_size]
        return

    def read(path: Path) -> torch.Tensor | str:
        try:
            return load_image(path)
        except DataError as exc:
            return skip_reason(exc)

    new: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i in range(0, len(data), batch_size):
            paths = data.paths[i : i + batch_size]
            images = list(pool.map(read, paths))
            keep = [k for k, img in enumerate(images) if isinstance(img, torch.Tensor)]
            for p, img in zip(paths, images):
                if isinstance(img, str) and p not in ds.skipped:
                    new[p] = ds.skipped[p] = img
            yield [images[k] for k in keep], data.labels[i : i + batch_size][keep]
    if new:
        warnings.warn(f"skipped {describe_skipped(new)}", VGGNetWarning, stacklevel=2)
