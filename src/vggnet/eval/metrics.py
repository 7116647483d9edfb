"""Top-k error, the confusion matrix, a classification report and an error analysis.

The error analysis looks for what the seed notes ran into: a net that predicts one or two
classes for everything (seed 000's "everything is comet"), the pairs of classes it mixes up,
and the classes it gets wrong most often.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vggnet.errors import ConfigError


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Per image: is the true label among the k highest scores? (k is capped at the class count.)"""
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ConfigError(f"expected scores [N, K] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return (top == labels.view(-1, 1).to(top.device)).any(dim=1)


def topk_error(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """The paper's top-k error: the fraction of images whose label is not among the k best guesses."""
    if len(labels) == 0:
        raise ConfigError("top-k error of zero images is undefined; evaluate at least one image")
    return 1.0 - topk_correct(scores, labels, k).float().mean().item()


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [K, K]: row = true class, column = predicted class."""
    index = labels.long().cpu() * num_classes + predicted.long().cpu()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_report(confusion: torch.Tensor) -> dict[str, list[float] | list[int]]:
    """Per-class precision, recall, F1 and support (lists in class order), from the confusion matrix.
    A class never predicted has precision 0; a class absent from the labels has recall 0."""
    cm = confusion.double()
    tp = cm.diagonal()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": support.long().tolist()}


def macro_average(report: dict[str, list]) -> dict[str, float]:
    """Unweighted mean of precision, recall and F1 over the classes present in the labels."""
    present = [i for i, s in enumerate(report["support"]) if s > 0]
    return {key: sum(report[key][i] for i in present) / max(1, len(present)) for key in ("precision", "recall", "f1")}


def collapse_threshold(num_classes: int) -> float:
    """Prediction share above which one class is suspicious: 3x a uniform share, at least 25%,
    at most 90% (10 classes: 30%; 257 classes: 25%; 2 classes: 90%)."""
    return min(0.9, max(0.25, 3.0 / num_classes))


def collapse_warning(share: torch.Tensor, true_share: torch.Tensor, classes: Sequence[str]) -> str | None:
    """A warning when one class, or two or three together ("everything is comet or background"),
    take far more of the predictions than of the images: a collapsed net. The suspects are the
    largest predicted classes (up to 3) that each take at least twice their share of the images
    and 1.5/k of the predictions; one alone warns above collapse_threshold, m = 2 or 3 together
    (with k > 2m) above min(0.9, max(0.5, 2m/k))."""
    k = len(classes)
    suspects = []
    for i in share.argsort(descending=True).tolist()[:3]:
        if share[i] < 2 * true_share[i] or share[i] < 1.5 / k:
            break
        suspects.append(i)
    for m in range(len(suspects), 0, -1):
        if m > 1 and k <= 2 * m:
            continue
        group = suspects[:m]
        taken, truth = float(share[group].sum()), float(true_share[group].sum())
        limit = collapse_threshold(k) if m == 1 else min(0.9, max(0.5, 2 * m / k))
        if taken >= limit:
            names = " and ".join(f"'{classes[i]}'" for i in group)
            towards = "one class" if m == 1 else f"{m} classes"
            return (f"{names} take{'s' if m == 1 else ''} {taken:.0%} of all predictions but "
                    f"{'is' if m == 1 else 'are'} {truth:.0%} of the images: the net has collapsed towards "
                    f"{towards}; check the learning rate, the init and the input normalisation "
                    "(`vggnet diagnose`), or add batch norm")
    return None


def error_analysis(confusion: torch.Tensor, classes: Sequence[str], *, top: int = 5) -> dict[str, Any]:
    """What went wrong: the share of predictions per class (with a warning when one class takes
    far more than its share: a collapsed net), the most confused (true, predicted) pairs and the
    classes with the lowest recall."""
    cm = confusion.long().cpu()
    k = len(classes)
    if cm.shape != (k, k):
        raise ConfigError(f"confusion matrix is {tuple(cm.shape)} but there are {k} class names")
    total = max(1, int(cm.sum()))
    share = cm.sum(0).double() / total
    true_share = cm.sum(1).double() / total
    worst = int(share.argmax())
    warning = collapse_warning(share, true_share, classes)
    off = cm.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True)
    pairs = []
    for count, index in zip(counts.tolist()[:top], flat.tolist()[:top]):
        if count == 0:
            break
        t, p = divmod(index, k)
        pairs.append({"true": classes[t], "predicted": classes[p], "count": count,
                      "rate": count / max(1, int(cm[t].sum()))})
    report = classification_report(cm)
    present = [i for i in range(k) if report["support"][i] > 0]
    present.sort(key=lambda i: (report["recall"][i], report["f1"][i]))
    worst_classes = [{"class": classes[i], "recall": report["recall"][i], "precision": report["precision"][i],
                      "f1": report["f1"][i], "support": report["support"][i]} for i in present[:top]]
    return {
        "prediction_share": share.tolist(),
        "max_share_class": classes[worst],
        "max_share": float(share[worst]),
        "collapse_warning": warning,
        "never_predicted": [classes[i] for i in range(k) if share[i] == 0],
        "most_confused_pairs": pairs,
        "worst_classes": worst_classes,
    }
