"""Atomic, resumable, safe-to-load checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, written to a
temp file then moved into place (never half-written), and read back with
``torch.load(weights_only=True)`` (no code is ever unpickled).
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggnet.errors import TrainingError
from vggnet.files import atomic_write


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


def save(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise TrainingError(f"checkpoint {path} cannot be read safely ({str(exc).splitlines()[0][:120]}); "
                            "delete it to start the run afresh") from None
