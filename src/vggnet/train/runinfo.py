"""run.json: when a run finished, on what software, and whether it was resumed: the facts a
report shows next to its numbers (kept out of eval.json, which holds the figures only)."""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from vggnet.files import atomic_write


def versions() -> dict[str, str]:
    """Package versions that decide the numbers (and the machine they ran on)."""
    try:
        ours = metadata.version("vggnet")
    except metadata.PackageNotFoundError:
        ours = "source checkout"
    return {"vggnet": ours, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "cpu_threads": str(torch.get_num_threads())}


def write_run_info(out: str | Path, *, resumed: bool, device: str) -> Path:
    """Write out/run.json: finished (UTC ISO date), resumed, device, versions, the command line."""
    info: dict[str, Any] = {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "resumed": resumed, "device": device,
        "versions": versions(), "argv": sys.argv[1:],
    }
    path = Path(out) / "run.json"
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1)))
    return path
