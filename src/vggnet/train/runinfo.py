"""What run.json says of a finished run: when it finished, on what software, and whether it was resumed: the facts a
report shows next to its numbers (kept out of eval.json, which holds the figures only)."""

from __future__ import annotations

import platform
import sys
import time
from importlib import metadata
from typing import Any

import torch


def versions() -> dict[str, str]:
    """Package versions that decide the numbers (and the machine they ran on)."""
    try:
        ours = metadata.version("vggnet")
    except metadata.PackageNotFoundError:
        ours = "source checkout"
    return {"vggnet": ours, "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(terse=True), "cpu_threads": str(torch.get_num_threads())}


def run_info(*, resumed: bool, device: str) -> dict[str, Any]:
    """What run.json records of a finished run besides its fingerprint (train/rundir.py): when
    (UTC ISO date), whether it was resumed, the device, the versions, the command line."""
    return {"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "resumed": resumed,
            "device": device, "versions": versions(), "argv": sys.argv[1:]}
