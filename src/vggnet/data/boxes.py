"""Bounding-box annotations in the Pascal VOC XML format, which ILSVRC's localisation devkit
uses too (one file per image), and the localisation sets built on them.

Layouts (``data.dir``):
- ILSVRC (``data.name: ilsvrc-loc``): ``Annotations/CLS-LOC/<split>/**/<id>.xml`` with the
  images at ``Data/CLS-LOC/<split>/**/<id>.JPEG``; splits train and val (val is our test).
- VOC (``data.name: voc-loc``): ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``, the splits
  listed in ``ImageSets/Main/{train,val,test}.txt`` (test falls back to val).

Coordinates: VOC's are 1-based inclusive pixels; a box becomes (xmin - 1, ymin - 1, xmax,
ymax), continuous 0-based corners. Bad data is skipped and counted, never fatal: an XML file
that does not parse or holds no box, a box outside the image or with no area, a missing image.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # local files of a devkit; expat refuses external entities
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vggnet.config import DataConfig
from vggnet.data import sources
from vggnet.data.sources import Dataset, Split
from vggnet.errors import DataError

IMAGE_SUFFIXES = (".JPEG", ".jpeg", ".jpg", ".JPG", ".png")


@dataclass
class Annotation:
    """One image's objects: class names and (x1, y1, x2, y2) boxes."""

    filename: str
    width: int
    height: int
    names: list[str] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    difficult: list[bool] = field(default_factory=list)  # VOC's flag: ignored when scoring


def read_annotation(path: str | Path, skipped: Counter | None = None) -> Annotation | None:
    """One VOC/ILSVRC XML file; None (counted in ``skipped``) when it is unreadable or has no
    valid box. Boxes outside the image or without area are dropped and counted."""
    skipped = Counter() if skipped is None else skipped
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
    except (ET.ParseError, OSError, AttributeError, TypeError, ValueError):
        skipped["unreadable xml"] += 1
        return None
    ann = Annotation(root.findtext("filename") or Path(path).stem, width, height)
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        try:
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            skipped["object without a box"] += 1
            continue
        x1, y1 = x1 - 1, y1 - 1
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            skipped["box outside the image"] += 1
        elif x2 <= x1 or y2 <= y1:
            skipped["box without area"] += 1
        else:
            ann.names.append((obj.findtext("name") or "").strip())
            ann.boxes.append((x1, y1, x2, y2))
            ann.difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    if not ann.boxes:
        skipped["xml without a box"] += 1
        return None
    return ann


def _image_for(stem: Path, skipped: Counter) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if stem.with_suffix(suffix).is_file():
            return stem.with_suffix(suffix)
    skipped["missing image"] += 1
    return None


def read_split(pairs: list[tuple[Path, Path]], skipped: Counter) -> list[tuple[Path, Annotation]]:
    """(xml path, image stem) pairs -> (image path, annotation) for the valid ones."""
    out = []
    for xml, stem in pairs:
        ann = read_annotation(xml, skipped)
        image = _image_for(stem, skipped) if ann is not None else None
        if image is not None:
            out.append((image, ann))
    return out


def to_split(items: list[tuple[Path, Annotation]], classes: list[str]) -> Split:
    """One entry per box (an image with three boxes appears three times; `ground_truth` in
    eval.localisation groups them back by path)."""
    index = {c: i for i, c in enumerate(classes)}
    paths, labels, boxes = [], [], []
    for image, ann in items:
        for name, box in zip(ann.names, ann.boxes):
            paths.append(image)
            labels.append(index[name])
            boxes.append(box)
    return Split(labels=torch.tensor(labels, dtype=torch.long), paths=paths,
                 boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))


def _dataset(name: str, splits: dict[str, list[tuple[Path, Path]]]) -> Dataset:
    skipped: Counter = Counter()
    items = {split: read_split(pairs, skipped) for split, pairs in splits.items()}
    classes = sorted({n for split in items.values() for _, ann in split for n in ann.names})
    if not items["train"] or not classes:
        raise DataError(f"{name}: no training image with a valid box ({dict(skipped) or 'no XML files'})")
    built = {split: to_split(found, classes) for split, found in items.items()}
    ds = Dataset(name, classes, 3, built["train"], built.get("val") or built["train"].take(torch.zeros(0).long()),
                 built["test"], in_memory=False)
    ds.box_skipped = dict(skipped)  # what was skipped and why, for the run's log
    if skipped:
        print(f"{name}: skipped {sum(skipped.values())} ({', '.join(f'{v} {k}' for k, v in skipped.items())})")
    return ds


def _root(cfg: DataConfig, name: str, marker: str) -> Path:
    root = Path(cfg.dir or ".").expanduser()
    if not (root / marker).is_dir():
        raise DataError(f"{name}: {root / marker} not found; point --data-dir at the folder holding {marker}")
    return root


@sources.register("ilsvrc-loc")
def _ilsvrc(cfg: DataConfig, seed: int) -> Dataset:
    root = _root(cfg, "ilsvrc-loc", "Annotations/CLS-LOC")
    ann, data = root / "Annotations" / "CLS-LOC", root / "Data" / "CLS-LOC"

    def pairs(split: str) -> list[tuple[Path, Path]]:
        xmls = sorted((ann / split).rglob("*.xml"))
        return [(x, data / split / x.relative_to(ann / split).with_suffix("")) for x in xmls]

    return _dataset("ilsvrc-loc", {"train": pairs("train"), "test": pairs("val")})


@sources.register("voc-loc")
def _voc(cfg: DataConfig, seed: int) -> Dataset:
    root = _root(cfg, "voc-loc", "Annotations")
    lists = root / "ImageSets" / "Main"

    def pairs(split: str) -> list[tuple[Path, Path]]:
        listed = lists / f"{split}.txt"
        ids = listed.read_text().split() if listed.is_file() else []
        return [(root / "Annotations" / f"{i}.xml", root / "JPEGImages" / i) for i in ids]

    test = pairs("test") or pairs("val")
    return _dataset("voc-loc", {"train": pairs("train"), "val": pairs("val") if pairs("test") else [], "test": test})


def voc_image_labels(root: str | Path, split: str, classes: list[str] | None = None,
                     ) -> tuple[list[Path], torch.Tensor, list[str], Counter]:
    """VOC's classification task from its XML: per image of ImageSets/Main/<split>.txt, 1 for a
    class present, -1 absent, 0 present only as "difficult" (ignored, as the VOC devkit does).
    -> (image paths, labels int8 [N, C], classes, what was skipped)."""
    root, skipped = Path(root), Counter()
    listed = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listed.is_file():
        raise DataError(f"{listed} not found; expected VOC's layout (Annotations/, JPEGImages/, ImageSets/Main/)")
    pairs = [(root / "Annotations" / f"{i}.xml", root / "JPEGImages" / i) for i in listed.read_text().split()]
    items = read_split(pairs, skipped)
    classes = classes or sorted({n for _, ann in items for n in ann.names})
    index = {c: k for k, c in enumerate(classes)}
    labels = -torch.ones(len(items), len(classes), dtype=torch.int8)
    for row, (_, ann) in enumerate(items):
        for name, hard in zip(ann.names, ann.difficult):
            if name in index:
                k = index[name]
                labels[row, k] = max(int(labels[row, k]), 0 if hard else 1)
    return [image for image, _ in items], labels, classes, skipped
