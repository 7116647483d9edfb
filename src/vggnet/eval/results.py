"""eval.json over time: one dated entry per (split, protocol, scales, images), so a later quick
`vggnet eval --limit 500` adds rows instead of replacing the full test set's.

The top level (`split`, `n`, `protocols`, the confusion matrix and analysis) stays what the
readers (reports, the sweep index) know: the most complete evaluation, the test split with the
most images; rows of other protocols over the same images are kept next to the new ones.
"""

from __future__ import annotations

import time
from typing import Any


def _entries(result: dict[str, Any], date: str) -> list[dict[str, Any]]:
    return [{"protocol": name, "split": result.get("split"), "images": row.get("n", result.get("n")),
             "scales": row.get("scales"), "date": date, **{k: v for k, v in row.items() if k not in ("n", "scales")}}
            for name, row in (result.get("protocols") or {}).items()]


def _key(entry: dict[str, Any]) -> tuple:
    return entry.get("split"), entry.get("protocol"), tuple(entry.get("scales") or ()), entry.get("images")


def _rank(result: dict[str, Any]) -> tuple:
    return result.get("split") == "test", result.get("n") or 0


def merge(old: dict[str, Any] | None, new: dict[str, Any], date: str | None = None) -> dict[str, Any]:
    """``new`` merged into an existing eval.json dict ``old`` (see the module docstring)."""
    date = date or time.strftime("%Y-%m-%dT%H:%M:%S")
    entries = {_key(e): e for e in (old or {}).get("entries") or [] if isinstance(e, dict)}
    if old and "entries" not in old:  # an eval.json from before entries: its rows are kept too
        entries.update({_key(e): e for e in _entries(old, "unknown")})
    entries.update({_key(e): e for e in _entries(new, date)})
    if old and old.get("protocols") and _rank(old) > _rank(new):
        top = {k: v for k, v in old.items() if k != "entries"}
    elif old and (old.get("split"), old.get("n")) == (new.get("split"), new.get("n")):
        kept = {k: v for k, v in (old.get("protocols") or {}).items() if k not in new["protocols"]}
        top = {**new, "protocols": {**kept, **new["protocols"]}}
    else:
        top = {k: v for k, v in new.items() if k != "entries"}
    return {**top, "entries": sorted(entries.values(), key=lambda e: (str(e.get("date")), str(e.get("protocol"))))}
