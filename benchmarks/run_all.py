"""`make bench`: rerun every benchmark; each writes its markdown to benchmarks/results/.

BENCHMARKS.md quotes those files with the machine they ran on. On a shared or busy machine
the absolute figures drop; the side-by-side ratios are what the targets are about.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent
SCRIPTS = [
    ["bench_data.py"],
    ["bench_train.py", "--time-to-accuracy"],
    ["bench_allocator.py"],
    ["bench_eval.py"],
    ["bench_eval_layout.py"],
    ["bench_health.py"],
    ["bench_memory.py"],
]
if torch.cuda.is_available():  # VGG-16 at 224 is a GPU workload
    SCRIPTS.append(["bench_gpu.py"])


def main() -> int:
    failed = []
    for script, *args in SCRIPTS:
        print(f"== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args]).returncode:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
