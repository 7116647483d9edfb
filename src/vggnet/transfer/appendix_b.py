"""Appendix B's protocols on top of the descriptors of transfer.features.

- Several nets (the paper's D & E) are combined by stacking their descriptors: `stack`.
- PASCAL VOC: one linear SVM per class on the descriptors (one-vs-rest, multi-label); the
  mean over classes of the average precision, 11-point interpolated as in VOC-2007: `voc_map`.
  Labels are VOC's: 1 present, -1 absent, 0 "difficult" only (left out of training and scoring).
- Caltech-101/256: ``splits`` random splits with ``train_per_class`` training images per class
  (30 for Caltech-101, 60 for Caltech-256) and up to ``test_per_class`` test images (50 for
  Caltech-101; None: the rest), a multi-class linear SVM, mean class recall, its mean and std
  over the splits: `caltech_protocol`.

The paper: VOC-2007 89.7 mAP, VOC-2012 89.3, Caltech-101 92.7%, Caltech-256 86.2% (D & E).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import torch

from vggnet.errors import ConfigError

RECALL_POINTS = [i / 10 for i in range(11)]  # VOC-2007: recall 0, 0.1, ..., 1


def stack(*descriptors: torch.Tensor) -> torch.Tensor:
    """Concatenate L2-normalised descriptors of the same images (D & E; or per scale), renormalised."""
    if len({len(d) for d in descriptors}) != 1:
        raise ConfigError(f"stacked descriptors must describe the same images, got {[len(d) for d in descriptors]}")
    parts = [torch.nn.functional.normalize(d.float(), dim=1) for d in descriptors]
    return torch.nn.functional.normalize(torch.cat(parts, 1), dim=1)


def voc07_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """11-point interpolated average precision (VOC-2007): the mean over recall r in {0, 0.1,
    ..., 1} of the highest precision at a recall >= r. ``labels``: 1, -1, 0 (ignored)."""
    keep = labels != 0
    scores, positive = scores[keep], labels[keep] > 0
    if not positive.any():
        raise ConfigError("average precision needs at least one positive image")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(positive[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / positive.sum()
    return float(np.mean([precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in RECALL_POINTS]))


def voc_map(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
            classes: list[str], *, C: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Per-class linear SVMs, VOC-2007 AP per class on the test images, and their mean."""
    from sklearn.svm import LinearSVC

    xtr, xte = train_x.double().numpy(), test_x.double().numpy()
    ytr, yte = train_y.numpy(), test_y.numpy()
    ap = {}
    for k, name in enumerate(classes):
        use = ytr[:, k] != 0
        if len(set(ytr[use, k])) < 2:
            raise ConfigError(f"class '{name}' needs positive and negative training images for its SVM")
        svm = LinearSVC(C=C, random_state=seed).fit(xtr[use], ytr[use, k] > 0)
        ap[name] = voc07_ap(svm.decision_function(xte), yte[:, k])
    return {"protocol": "voc", "C": C, "ap": ap, "map": float(np.mean(list(ap.values()))),
            "n_train": len(xtr), "n_test": len(xte)}


def mean_class_recall(predicted: np.ndarray, labels: np.ndarray) -> float:
    """The mean over classes of the fraction of that class's images predicted as it."""
    return float(np.mean([(predicted[labels == c] == c).mean() for c in np.unique(labels)]))


def caltech_splits(labels: torch.Tensor, train_per_class: int, test_per_class: int | None = None,
                   splits: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``splits`` random (train, test) index splits: per class ``train_per_class`` images for
    training, then up to ``test_per_class`` (None: all the rest) for testing."""
    y = labels.numpy()
    out = []
    for s in range(splits):
        rng = np.random.default_rng([seed, s])
        train, test = [], []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            if len(idx) <= train_per_class:
                raise ConfigError(f"class {int(c)} has {len(idx)} images: not more than train_per_class="
                                  f"{train_per_class}, none left to test")
            train.append(idx[:train_per_class])
            test.append(idx[train_per_class:][:test_per_class])
        out.append((np.concatenate(train), np.concatenate(test)))
    return out


def caltech_protocol(x: torch.Tensor, y: torch.Tensor, *, train_per_class: int, test_per_class: int | None = None,
                     splits: int = 3, C: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Mean class recall of a linear SVM over random splits (Caltech-101/256 in Appendix B)."""
    from sklearn.svm import LinearSVC

    xs, ys = x.double().numpy(), y.numpy()
    recalls = []
    for train, test in caltech_splits(y, train_per_class, test_per_class, splits, seed):
        svm = LinearSVC(C=C, random_state=seed).fit(xs[train], ys[train])
        recalls.append(mean_class_recall(svm.predict(xs[test]), ys[test]))
    return {"protocol": "caltech", "C": C, "train_per_class": train_per_class, "test_per_class": test_per_class,
            "splits": recalls, "mean_class_recall": statistics.mean(recalls),
            "std": statistics.stdev(recalls) if len(recalls) > 1 else 0.0}
