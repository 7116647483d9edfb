"""File writing that never leaves a half-written result behind, and the words for a file torch refused
(ground floor: imports nothing of vggnet)."""

from __future__ import annotations

import errno
import os
import re
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


def short(text: str, limit: int = 120) -> str:
    """The first line of ``text``, cut at a word boundary to at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return f"{cut} ..."


def torch_load_problem(exc: BaseException) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words (torch's
    own message is a paragraph of advice about unsafe loading that does not apply here)."""
    text = str(exc)
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            return f"it names Python code ({found.group(1)}) that loading would run (never unpickled)"
        reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        reason = short(reason, 60) or "not a plain tensor pickle"
        return f"it is not a plain tensor file: damaged or another format ({reason})"
    if ("PytorchStreamReader" in text or "zip archive" in text or isinstance(exc, EOFError)
            or (isinstance(exc, OSError) and exc.errno == errno.EINVAL)):  # a seek past the end: truncated
        return "it is not a complete torch file (truncated or damaged archive)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"it cannot be read ({exc.strerror})"
    # random or foreign bytes fail inside the unpickler in many ways (IndexError, KeyError, UnicodeDecodeError)
    return f"it is not a plain tensor file: damaged or another format ({type(exc).__name__}: {short(text, 40)})"
