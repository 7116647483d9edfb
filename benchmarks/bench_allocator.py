"""What keeping freed memory (vggnet.train.runtime.keep_freed_memory, glibc's mallopt) buys a CPU
training step, against glibc's defaults, side by side in one run.

Each arm runs in its own process (mallopt is process-wide), alternating on/off for --repeats
rounds: the training step of the default config and of the same-net bf16 loop of
bench_train.py, median images/s over 5-step windows, minor page faults and system time per step.

    python benchmarks/bench_allocator.py [--repeats 3] [--steps 40]

Writes benchmarks/results/allocator.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ARM = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import vggnet.train.trainer as trainer_module
from vggnet import config

keep, steps, overrides = sys.argv[1] == "on", int(sys.argv[2]), sys.argv[3:]
if not keep:
    trainer_module.keep_freed_memory = lambda: False
cfg = config.load(None, ["train.progress=false", "train.health_every=0", *overrides])
trainer = trainer_module.Trainer(cfg, Path(tempfile.mkdtemp()), None, None)
trainer.net.train()
batches = trainer.train_loader.epoch(0)
def step():
    x, y = next(batches)
    trainer.train_step(x, y)
for _ in range(3):
    step()
usage, rates = resource.getrusage(resource.RUSAGE_SELF), []
for _ in range(max(1, steps // 5)):
    t = time.perf_counter()
    for _ in range(5):
        step()
    rates.append(5 * cfg.train.batch_size / (time.perf_counter() - t))
after = resource.getrusage(resource.RUSAGE_SELF)
n = max(1, steps // 5) * 5
print(json.dumps({"rates": rates, "faults": (after.ru_minflt - usage.ru_minflt) / n,
                  "sys_ms": 1000 * (after.ru_stime - usage.ru_stime) / n}))
"""

CASES = {
    "default config (`vggnet train`: quarter-width A-BN, batch 256)": [],
    "same net as bench_train.py (A-BN, gap, width 1), bf16 + channels_last, batch 128":
        ["model.name=A", "model.width=1.0", "model.batch_norm=true", "model.head=gap", "model.dropout=0",
         "train.batch_size=128"],
}


def run_arm(keep: bool, steps: int, overrides: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", ARM, "on" if keep else "off", str(steps), *overrides],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    lines = [f"### Keeping freed memory: CPU training step ({platform.processor() or platform.machine()}, "
             f"median of {args.repeats} alternating runs per arm)", "",
             "| step | glibc defaults: images/s | kept: images/s | ratio | page faults / step (defaults / kept) "
             "| system ms / step (defaults / kept) |", "|---|---:|---:|---:|---:|---:|"]
    for name, overrides in CASES.items():
        arms: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeats):
            for keep in (False, True):
                arms[keep].append(run_arm(keep, args.steps, overrides))
        rate = {k: statistics.median(statistics.median(r["rates"]) for r in v) for k, v in arms.items()}
        faults = {k: statistics.median(r["faults"] for r in v) for k, v in arms.items()}
        sys_ms = {k: statistics.median(r["sys_ms"] for r in v) for k, v in arms.items()}
        lines.append(f"| {name} | {rate[False]:.0f} | {rate[True]:.0f} | {rate[True] / rate[False]:.2f}x "
                     f"| {faults[False]:.0f} / {faults[True]:.0f} | {sys_ms[False]:.1f} / {sys_ms[True]:.1f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    out = Path(__file__).parent / "results" / "allocator.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
