"""File writing that never leaves a half-written result behind (ground floor: imports nothing of vggnet)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less the process umask: the permissions `open()` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write(path: str | Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then move the file into place: never a half-written file. The
    file gets the user's umask like any other (mkstemp's 0600 would hide results on a shared machine)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
