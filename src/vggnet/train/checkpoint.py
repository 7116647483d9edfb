"""Atomic, checksummed, resumable, safe-to-load checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written to a
temp file then moved into place (never half-written), and read back with
``torch.load(weights_only=True)`` (no code is ever unpickled). It carries a SHA-256 of its
own content, checked on load, so a flipped bit is caught instead of resumed from. The one
before it is kept as ``prev.pt``: a damaged ``last.pt`` falls back to it with a message.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggnet.errors import TrainingError
from vggnet.files import atomic_write, short, torch_load_problem

LAST, PREVIOUS = "last.pt", "prev.pt"
REQUIRED = ("model", "optimizer", "epoch", "batch", "step", "rng", "metrics_lines")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                             "python_pos": random.getstate()[2],
                             "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                             "numpy_pos": int(np.random.get_state()[2])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(b"D%d;" % len(obj))
        for key in sorted(obj, key=repr):
            _feed(h, key)
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d;" % len(obj))
        for item in obj:
            _feed(h, item)
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def digest(state: dict[str, Any]) -> str:
    """SHA-256 of a state's content (tensor bytes, shapes, dtypes, every other value)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def save(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` with its checksum to ``path``; the file it replaces becomes prev.pt."""
    path = Path(path)
    state = {**state, "checksum": digest(state)}

    def write(tmp: str) -> None:
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before it replaces the good one
        if path.is_file():
            os.replace(path, path.with_name(PREVIOUS))

    atomic_write(path, write)


def load(path: str | Path) -> dict[str, Any]:
    """A verified checkpoint dict, or a TrainingError in one line saying what is wrong with it."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise TrainingError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged zip or pickle raises many types
        raise TrainingError(f"checkpoint {path} cannot be read: {torch_load_problem(exc)}") from None
    if not isinstance(state, dict):
        raise TrainingError(f"checkpoint {path} holds a {type(state).__name__}, not a training state")
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise TrainingError(f"checkpoint {path} lacks {', '.join(missing)}; it is not a vggnet training state")
    if "checksum" not in state:  # written before checkpoints carried one: usable, but say so
        print(f"note: checkpoint {path} carries no checksum (an older vggnet wrote it); resuming from it "
              "unverified", file=sys.stderr, flush=True)
    elif state["checksum"] != digest(state):
        raise TrainingError(f"checkpoint {path} is damaged (its checksum does not match its content)")
    return state


def load_latest(folder: Path, apply: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """Load last.pt into the run with ``apply``; if it is damaged or does not fit, prev.pt (with
    a message). None when there is no checkpoint; a TrainingError when none is usable."""
    problems: list[str] = []
    for name in (LAST, PREVIOUS):
        path = folder / name
        if not path.is_file():
            continue
        try:
            state = load(path)
            try:
                apply(state)
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
                first = short(next((ln for ln in lines if re.match(r"(size mismatch|Missing key|Unexpected key)", ln)),
                                   lines[0]), 160)
                raise TrainingError(f"checkpoint {path} does not fit this run ({first})") from None
        except TrainingError as exc:
            problems.append(str(exc))
            continue
        if problems:
            print(f"note: {problems[0]}; resumed from the previous checkpoint {path}", file=sys.stderr, flush=True)
        return state
    if problems:
        raise TrainingError(f"{problems[0]}, and no earlier good checkpoint is left; start afresh with "
                            "--overwrite (or another --out)")
    return None
