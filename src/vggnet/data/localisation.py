"""A localisation set derived from Fashion-MNIST: every box known exactly, offline.

ILSVRC's localisation data is 150 GB; to train and test the paper's box nets (Appendix A)
without it, `fashion-mnist-loc` places each Fashion-MNIST item at a random position and scale
on a larger canvas (``data.image_size`` px square) over clutter: crops of other items, dimmed.
The ground-truth box is the item's tight box (its non-zero pixels) after the placement. The
class is the item's. It is a derived set, not a benchmark of the field: deterministic from
the item's split, the canvas size and ``seed`` only (the same canvases for every run seed).

Boxes are (x1, y1, x2, y2) in pixels of the canvas, continuous coordinates (a box covering
pixel columns 3..10 is x1=3, x2=11), as torchvision.ops expects.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from vggnet.config import DataConfig
from vggnet.data import sources
from vggnet.data.sources import Dataset, Split
from vggnet.errors import ConfigError

SCALE = (0.4, 0.8)  # item side as a fraction of the canvas side
CLUTTER = 3  # crops of other items per canvas
CLUTTER_SIDE = 0.25  # a clutter crop's side as a fraction of the canvas
CLUTTER_GAIN = 0.5  # clutter is dimmer than the item
INK = 16  # a pixel above this (of 255) belongs to the item's tight box


def tight_boxes(items: torch.Tensor) -> torch.Tensor:
    """Tight (x1, y1, x2, y2) of each item's pixels above INK: uint8 [N, 1, H, W] -> [N, 4]
    (an item without ink gets an empty box at 0; `derive` skips such items)."""
    ink = items[:, 0] > INK
    rows, cols = ink.any(2), ink.any(1)
    idx_r = torch.arange(rows.shape[1]).expand_as(rows)
    idx_c = torch.arange(cols.shape[1]).expand_as(cols)
    y1 = torch.where(rows, idx_r, rows.shape[1]).min(1).values
    y2 = torch.where(rows, idx_r, -1).max(1).values + 1
    x1 = torch.where(cols, idx_c, cols.shape[1]).min(1).values
    x2 = torch.where(cols, idx_c, -1).max(1).values + 1
    return torch.stack([x1, y1, x2, y2], 1).float().clamp(min=0)


def derive(items: torch.Tensor, labels: torch.Tensor, *, canvas: int, seed: int) -> Split:
    """Place ``items`` (uint8 [N, 1, h, w]) on clutter: a Split with images, labels and boxes.
    Items without a pixel above INK have no box: skipped, and counted on stdout."""
    blank = ~(items[:, 0] > INK).flatten(1).any(1)
    if blank.any():
        print(f"fashion-mnist-loc: skipped {int(blank.sum())} items without ink (no box)")
        items, labels = items[~blank], labels[~blank]
    n, _, h, w = items.shape
    if canvas < 2 * max(h, w) * SCALE[0]:
        raise ConfigError(f"fashion-mnist-loc needs data.image_size >= {int(2 * max(h, w) * SCALE[0])}, got {canvas}")
    g = torch.Generator().manual_seed(sources.seed_of("fashion-mnist-loc", canvas, seed))
    sides = (SCALE[0] + (SCALE[1] - SCALE[0]) * torch.rand(n, generator=g)) * canvas
    sides = sides.round().long().clamp(min=8, max=canvas)
    oy = (torch.rand(n, generator=g) * (canvas - sides + 1).float()).long()
    ox = (torch.rand(n, generator=g) * (canvas - sides + 1).float()).long()
    out = torch.zeros(n, 1, canvas, canvas)
    # clutter: a random crop (half the item's side) of another item, rescaled, dimmed
    side = max(4, round(CLUTTER_SIDE * canvas))
    crop = h // 2
    for _ in range(CLUTTER):
        other = torch.randint(0, n, (n,), generator=g)
        cy, cx = torch.randint(0, h - crop + 1, (2, n), generator=g)
        py, px = torch.randint(0, canvas - side + 1, (2, n), generator=g)
        patches = torch.stack([items[o, :, y:y + crop, x:x + crop] for o, y, x in
                               zip(other.tolist(), cy.tolist(), cx.tolist())]).float()
        patches = F.interpolate(patches, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        for i, (y, x) in enumerate(zip(py.tolist(), px.tolist())):
            region = out[i, :, y:y + side, x:x + side]
            torch.maximum(region, CLUTTER_GAIN * patches[i], out=region)
    boxes = tight_boxes(items)
    for s in sides.unique().tolist():
        idx = (sides == s).nonzero()[:, 0]
        placed = F.interpolate(items[idx].float(), size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        for j, i in enumerate(idx.tolist()):
            y, x = int(oy[i]), int(ox[i])
            out[i, :, y:y + s, x:x + s] = torch.maximum(out[i, :, y:y + s, x:x + s], placed[j])
    sx, sy = sides.float() / w, sides.float() / h
    boxes = boxes * torch.stack([sx, sy, sx, sy], 1) + torch.stack([ox, oy, ox, oy], 1).float()
    return Split(labels=labels.clone(), images=out.round().clamp(0, 255).to(torch.uint8), boxes=boxes)


@sources.register("fashion-mnist-loc")
def _fashion_mnist_loc(cfg: DataConfig, seed: int) -> Dataset:
    """data.num_train / data.num_test items of Fashion-MNIST's train / test splits (the
    first ones of a fixed permutation) on canvases of data.image_size px."""
    base = sources.get(dataclasses.replace(cfg, name="fashion-mnist", subset=None, val_fraction=0.0))
    splits = []
    for name, split, count in (("train", base.train, cfg.num_train), ("test", base.test, cfg.num_test)):
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(sources.seed_of("loc", name)))
        picked = split.take(order[:count])
        splits.append(derive(picked.images, picked.labels, canvas=cfg.image_size, seed=sources.seed_of(name)))
    train, test = splits
    empty = Split(labels=train.labels[:0], images=train.images[:0], boxes=train.boxes[:0])
    return Dataset("fashion-mnist-loc", base.classes, 1, train, empty, test, in_memory=True)
