"""Decoding image files in DataLoader workers: rescale to S and crop in one PIL resize.

Per-image randomness (S and the crop offset) comes from a `random.Random` seeded by
(seed, epoch, index), so a batch is the same whatever the number of workers. Unreadable
files come back as None with the reason, and are counted by the loader, never raised.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vggnet.data.formats import open_image, skip_reason
from vggnet.data.sources import seed_of


def decode_crop(path: Path, size: int, scale: Sequence[int], rng: random.Random | None) -> torch.Tensor:
    """Rescale isotropically so the shorter side is S, then crop size x size; uint8 [3, size, size].

    Train (rng given): S ~ U[min(scale), max(scale)] and a random crop. Eval (rng None): S =
    scale[0] and the centre crop. Only the crop's source box is resampled (`resize(box=...)`), and
    JPEGs are decoded at 1/2, 1/4 or 1/8 size (`draft`) when S is that much smaller than the file.
    """
    with open_image(path) as im:
        s = rng.randint(min(scale), max(scale)) if rng is not None else scale[0]
        w, h = im.size
        if im.format == "JPEG":
            r = s / min(w, h)
            im.draft("RGB", (math.ceil(w * r), math.ceil(h * r)))
        im = im.convert("RGB")
        w, h = im.size
        r = s / min(w, h)
        sw, sh = max(size, round(w * r)), max(size, round(h * r))
        if rng is not None:
            ox, oy = rng.randint(0, sw - size), rng.randint(0, sh - size)
        else:
            ox, oy = (sw - size) // 2, (sh - size) // 2
        box = (ox / r, oy / r, min(w, (ox + size) / r), min(h, (oy + size) / r))
        out = im.resize((size, size), Image.BILINEAR, box=box)
        return torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1)


def decode_thumbnail(path: Path, side: int = 64) -> torch.Tensor | None:
    """A small RGB decode for statistics (JPEG draft, no resampling); None if unreadable (the same
    checks as training: never a FIFO, an empty file or one over data.max_pixels)."""
    try:
        with open_image(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (side, side))
            arr = np.asarray(im.convert("RGB"))
    except Exception:  # noqa: BLE001 - an unreadable file is skipped
        return None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class FolderItems(torch.utils.data.Dataset):
    """Indexed by (index, epoch): returns (uint8 crop or None if unreadable, label, index, why not)."""

    def __init__(self, paths: list[Path], labels: torch.Tensor, size: int, scale: Sequence[int],
                 train: bool, seed: int) -> None:
        self.paths, self.labels = paths, labels.tolist()
        self.size, self.scale, self.train, self.seed = size, list(scale), train, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | None, int, int, str]:
        index, epoch = key
        rng = random.Random(seed_of("image", self.seed, epoch, index)) if self.train else None
        try:
            return decode_crop(self.paths[index], self.size, self.scale, rng), self.labels[index], index, ""
        except Exception as exc:  # noqa: BLE001 - corrupt, truncated or non-image: counted by the loader
            return None, self.labels[index], index, skip_reason(exc)


class EpochBatches:
    """Batches start_batch.. of one epoch's order, as lists of (index, epoch) keys, made lazily."""

    def __init__(self, order: torch.Tensor, batch_size: int, start: int, stop: int, epoch: int) -> None:
        self.order, self.bs, self.start, self.stop, self.epoch = order, batch_size, start, stop, epoch

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):  # noqa: ANN204
        for b in range(self.start, self.stop):
            yield [(i, self.epoch) for i in self.order[b * self.bs : (b + 1) * self.bs].tolist()]


def collate(items: list[tuple[torch.Tensor | None, int, int, str]]
            ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, str]]]:
    """Stack the readable crops; return (index, reason) of the unreadable ones."""
    good = [(x, y) for x, y, _, _ in items if x is not None]
    bad = [(i, why) for x, _, i, why in items if x is None]
    if not good:
        return torch.empty(0, 3, 0, 0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good], dtype=torch.int64), bad
