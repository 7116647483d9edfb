"""The report's figures (matplotlib, Agg): each function returns PNG bytes to embed."""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 90


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _series(epochs: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(e["epoch"], e[key]) for e in epochs if e.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def learning_curves(epochs: list[dict[str, Any]]) -> bytes:
    """Loss, top-1 and learning rate per epoch (train and validation)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (title, keys) in zip(axes, (("loss", ("train_loss", "val_loss")), ("top-1 accuracy",
                                        ("train_top1", "val_top1")), ("learning rate", ("lr",)))):
        for key in keys:
            x, y = _series(epochs, key)
            if x:
                ax.plot(x, y, marker="." if len(x) < 30 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if keys == ("lr",) and any(v > 0 for v in _series(epochs, "lr")[1]):
            ax.set_yscale("log")
        elif len(keys) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(fig)


def _heatmap(ax: plt.Axes, matrix: list[list[float]], labels: list[str], *, counts: bool, fontsize: int = 7):
    """Row-normalised confusion heatmap on ax (rows: true, columns: predicted); the image."""
    n = len(matrix)
    rows = [[v / (sum(r) or 1) for v in r] for r in matrix]
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if labels and n <= 40:
        ax.set_xticks(range(n), labels, rotation=90, fontsize=fontsize)
        ax.set_yticks(range(n), labels, fontsize=fontsize)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if counts and n <= 15:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i][j]:g}", ha="center", va="center", fontsize=fontsize,
                        color="white" if rows[i][j] > 0.5 else "black")
    return im


def confusion_matrix(matrix: list[list[float]], classes: list[str]) -> bytes:
    """Row-normalised heatmap (rows: true class, columns: predicted), counts written in small sets."""
    n = len(matrix)
    size = min(12.0, 2.5 + 0.45 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    labels = classes if len(classes) == n else [str(i) for i in range(n)]
    im = _heatmap(ax, matrix, labels, counts=True)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return _png(fig)


def confusion_grid(matrices: dict[str, list[list[float]]], max_panels: int = 32) -> bytes:
    """One small row-normalised confusion matrix per cell (rows: true, columns: predicted, in the
    dataset's class order): a collapse onto one or two classes shows as a bright column."""
    items = list(matrices.items())[:max_panels]
    cols = min(4, max(1, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False, layout="constrained")
    im = None
    for ax, (label, matrix) in zip(axes.flat, items):
        im = _heatmap(ax, matrix, [], counts=False)
        ax.set_title(label, fontsize=8)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="fraction of the true class")
    return _png(fig)


def box_by_x(stats: list[dict[str, Any]], x_axis: str) -> bytes:
    """Seed 001's figure: test accuracy vs `x_axis` (e.g. batch size), one panel per configuration."""
    groups: dict[str, dict[Any, list[float]]] = {}
    for cell in stats:
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in cell["key"].items() if k != x_axis) or "all"
        groups.setdefault(label, {})[cell["key"].get(x_axis)] = [100 * a for a in cell["accs"]]
    cols = min(4, len(groups))
    rows = math.ceil(len(groups) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (label, by_x) in zip(axes.flat, groups.items()):
        xs = sorted(by_x, key=lambda v: (isinstance(v, str), v))
        ax.boxplot([by_x[x] or [float("nan")] for x in xs])
        ax.set_xticks(range(1, len(xs) + 1), [str(x) for x in xs])
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(x_axis.split(".")[-1])
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("test top-1 (%)")
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    return _png(fig)


def box_by_cell(stats: list[dict[str, Any]]) -> bytes:
    """Test accuracy over seeds, one box per cell (studies without a numeric x axis)."""
    labels = [", ".join(f"{k.split('.')[-1]}={v}" for k, v in c["key"].items()) or "all" for c in stats]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(stats) + 1.2))
    data = [[100 * a for a in c["accs"]] or [float("nan")] for c in stats]
    try:
        ax.boxplot(data, orientation="horizontal")
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(data, vert=False)
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("test top-1 (%)")
    ax.grid(alpha=0.3)
    return _png(fig)


def sweep_curves(curves: dict[str, list[list[dict[str, Any]]]], key: str = "val_top1", max_panels: int = 32) -> bytes:
    """Validation accuracy per epoch: one panel per cell, one line per seed."""
    items = list(curves.items())[:max_panels]
    cols = min(4, max(1, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.4 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax, (label, runs) in zip(axes.flat, items):
        for epochs in runs:
            x, y = _series(epochs, key)
            ax.plot(x, y, lw=1)
        ax.set_title(label, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(items):]:
        ax.set_visible(False)
    fig.supxlabel("epoch")
    fig.supylabel(key)
    return _png(fig)


def cell_points(cells: list[tuple[str, list[float], tuple[float, float] | None]],
                ylabel: str = "test top-1 error %", ceiling: float | None = None) -> bytes:
    """One column per cell: every seed's value as a dot, the mean as a bar and its interval as a
    line, so the spread and the n of each cell are seen at a glance (the study's plot). Values
    above `ceiling` (runs that never learned, which would squash every other cell to the floor)
    are drawn as a red triangle at the top of the axis with their value beside it."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * len(cells) + 1.5), 3.4))
    off_scale = False
    for i, (label, values, interval) in enumerate(cells):
        if not values:
            continue
        offsets = [(j - (len(values) - 1) / 2) * min(0.08, 0.5 / len(values)) for j in range(len(values))]
        shown = [(i + o, v) for o, v in zip(offsets, values) if ceiling is None or v <= ceiling]
        above = [(i + o, v) for o, v in zip(offsets, values) if ceiling is not None and v > ceiling]
        if shown:
            ax.scatter(*zip(*shown), s=14, color="tab:blue", alpha=0.7, zorder=3)
        if above:
            off_scale = True
            ax.scatter([x for x, _ in above], [ceiling] * len(above), marker="^", s=30, color="tab:red", zorder=3,
                       clip_on=False)
            ax.annotate(f"{max(v for _, v in above):.0f}", (i, ceiling), xytext=(6, -10), textcoords="offset points",
                        fontsize=6, color="tab:red")
        mean = sum(values) / len(values)
        if ceiling is None or mean <= ceiling:
            ax.hlines(mean, i - 0.3, i + 0.3, color="black", lw=2, zorder=4)
        if interval is not None:
            ax.vlines(i + 0.34, interval[0], interval[1], color="tab:red", lw=2, zorder=4)
    if ceiling is not None:
        ax.set_ylim(top=ceiling)
    ax.set_xticks(range(len(cells)), [f"{c[0]}\n(n={len(c[1])})" for c in cells], rotation=60 if len(cells) > 8
                  else 0, fontsize=7, ha="right" if len(cells) > 8 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title("dots: seeds; black: mean; red: 95% bootstrap interval of the mean"
                 + ("; red triangles: never learned (off the scale, value beside)" if off_scale else ""), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def example_grid(images: Any, titles: list[str], *, columns: int = 8, colours: list[str] | None = None) -> bytes:
    """Thumbnails (uint8 N x C x H x W) in a grid, each with its caption (true / predicted, p)."""
    n = len(titles)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.45 * columns, 1.75 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = images[k]
        if image.shape[0] == 1:
            ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(image[:3].transpose(1, 2, 0))
        ax.set_title(titles[k], fontsize=6.5, color=(colours[k] if colours else "black"))
    return _png(fig)
