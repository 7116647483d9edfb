"""Per-cell statistics over seeds: mean ± std, min, max of test accuracy and the share of
runs that never learned (seed 001's central observation)."""

from __future__ import annotations

import json
import math
from typing import Any

# A run "never learned" when its final test accuracy is at most chance (1/C) plus this
# margin: on 10 classes, <= 15%. Seed 001's stuck runs sat at exactly 10%; a run that
# learned anything at all clears 15% within an epoch.
NEVER_LEARNED_MARGIN = 0.05


def never_learned(test_top1: float | None, num_classes: int | None, margin: float = NEVER_LEARNED_MARGIN) -> bool:
    """True when the accuracy is within `margin` of chance 1/C."""
    if test_top1 is None or not num_classes:
        return False
    return test_top1 <= 1.0 / num_classes + margin


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def cell_stats(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group index rows by grid point; one dict per cell in first-seen order.

    Each: key, n (finished runs), failed, pending, mean, std, min, max (test accuracy,
    0-1, over finished runs), never_learned (fraction of finished runs), wall_s (mean).
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(json.dumps(row["key"], sort_keys=True), []).append(row)
    out = []
    for runs in groups.values():
        done = [r for r in runs if r["status"] == "done" and r.get("test_top1") is not None]
        accs = [r["test_top1"] for r in done]
        stats: dict[str, Any] = {
            "key": runs[0]["key"], "n": len(done), "runs": len(runs),
            "failed": sum(r["status"] == "failed" for r in runs),
            "pending": sum(r["status"] in ("pending", "running") for r in runs),
            "accs": accs, "mean": None, "std": None, "min": None, "max": None, "never_learned": None,
            "wall_s": None,
        }
        if accs:
            stats["mean"], stats["std"] = mean_std(accs)
            stats["min"], stats["max"] = min(accs), max(accs)
            stuck = [never_learned(r["test_top1"], r.get("num_classes")) for r in done]
            stats["never_learned"] = sum(stuck) / len(stuck)
            stats["wall_s"] = sum(r["wall_s"] or 0.0 for r in done) / len(done)
        out.append(stats)
    return out


def protocol_stats(rows: list[dict[str, Any]], protocol: str) -> tuple[float, float, int] | None:
    """Mean and std of top-1 error (%) of one eval protocol over finished rows, and n."""
    from vggnet.report.rundir import accuracy

    errors = [100.0 * (1.0 - accuracy(r["protocols"][protocol]["top1_error"]))
              for r in rows if r["status"] == "done" and protocol in (r.get("protocols") or {})]
    if not errors:
        return None
    mean, std = mean_std(errors)
    return mean, std, len(errors)


def fmt_pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if std is not None else f"{100 * mean:.1f}"
