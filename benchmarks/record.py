"""The record preset over seeds (BENCHMARKS.md, "The record preset"). Each seed is one
`vggnet train -c configs/fashion-mnist/record.yaml --set seed=N` under GNU `/usr/bin/time -v`
(peak resident memory, wall clock); run it with nothing else beside it. Its per-epoch figures,
test errors and resolved config go to benchmarks/results/record_seed<N>.json. Then the mean and
spread of every seed in results/ are printed, with the minutes each seed took to reach the target.

A finished run is exported, not trained again: delete runs/record-s<N> (and its .time file) to
rerun that seed. An unfinished one is resumed by `vggnet train`, so its time would be wrong:
the script refuses it.

    python benchmarks/record.py --seeds 0 1 2     # about an hour a seed on 2 CPU cores
    python benchmarks/record.py                   # only the summary of what results/ holds
    python benchmarks/record.py --seeds 0 --set train.epochs=1 --set data.subset=600 --set eval.limit=200 \\
        --runs /tmp/rec --results /tmp/rec        # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_data import cpu_name
from vggnet.report.rundir import read_config, read_json, read_metrics

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/fashion-mnist/record.yaml"
TARGET = 95.5  # % test accuracy, dense protocol (the bar; 95.47% is VGG8B, Nøkland & Eidnes 2019)
PROTOCOLS = ("dense", "centre", "multi_crop")  # multi_crop when `vggnet eval RUN --protocol multi_crop` added it


def machine() -> str:
    return f"{os.cpu_count()} CPUs ({cpu_name()}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def read_time(path: Path) -> dict:
    """Peak RSS (kB) and the wall clock from GNU time's -v report."""
    text = path.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    return {"peak_rss_kb": int(rss.group(1)) if rss else None, "wall_clock": wall.group(1) if wall else None}


def train(seed: int, run: Path, overrides: list[str]) -> dict:
    """Trains one seed under /usr/bin/time -v unless its run has finished; the facts of the sitting."""
    timing = run.with_suffix(".time")
    facts = read_json(run.with_suffix(".json"))
    if (run / "eval.json").is_file() and timing.is_file():
        return facts
    if run.exists():
        sys.exit(f"{run} holds an unfinished run (or one without its .time file): delete it to rerun seed {seed}")
    if not Path("/usr/bin/time").is_file():
        sys.exit("needs GNU time (/usr/bin/time) for the peak memory: apt install time")
    facts = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "load_at_start": round(os.getloadavg()[0], 2), "machine": machine()}
    cmd = ["/usr/bin/time", "-v", "-o", str(timing), sys.executable, "-m", "vggnet", "train", "-c",
           str(ROOT / CONFIG), "--set", f"seed={seed}", "--set", "train.progress=false", "--out", str(run),
           *[a for o in overrides for a in ("--set", o)]]
    print(f"seed {seed}: {' '.join(cmd[4:])}", flush=True)
    if subprocess.run(cmd).returncode:
        sys.exit(f"seed {seed}: training failed (its output is above); {run} is kept for a look")
    run.with_suffix(".json").write_text(json.dumps(facts))
    return facts


def export(seed: int, run: Path, facts: dict, results: Path) -> dict:
    epochs = [e for e in read_metrics(run)[0] if "health" not in e]  # the health monitor's snapshots aside
    protocols = read_json(run / "eval.json").get("protocols") or {}
    row = {"config": CONFIG, "seed": seed, "run_config": read_config(run),  # what ran, --set overrides included
           "test": {p: {k: protocols[p][k] for k in ("top1_error", "top5_error")} for p in PROTOCOLS if p in protocols},
           "epochs": epochs, **read_time(run.with_suffix(".time")), **facts}
    (results / f"record_seed{seed}.json").write_text(json.dumps(row, indent=1) + "\n")
    return row


def minutes_to(epochs: list[dict], key: str, target: float) -> float | None:
    hit = [e["wall_s"] for e in epochs if e.get(key) is not None and 100 * e[key] >= target]
    return round(hit[0] / 60, 1) if hit else None


def summary(results: Path) -> None:
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("record_seed*.json"))]
    if not rows:
        print(f"no record_seed*.json in {results}")
        return
    print(f"| seed | epochs | {' | '.join(f'{p} %' for p in PROTOCOLS)} | best val % | minutes of training | "
          "val first >= target at (min) | wall clock | peak RSS |")
    print("|---|---:|" + "---:|" * (len(PROTOCOLS) + 5))
    accs = [{p: 100 * (1 - r["test"][p]["top1_error"]) for p in PROTOCOLS if p in r["test"]} for r in rows]
    for r, acc in zip(rows, accs):
        vals = [e["val_top1"] for e in r["epochs"] if e.get("val_top1") is not None]
        rss, last = r.get("peak_rss_kb"), r["epochs"][-1]
        print(f"| {r['seed']} | {last['epoch']} | {' | '.join(f'{acc[p]:.2f}' if p in acc else '–' for p in PROTOCOLS)} | "
              f"{f'{100 * max(vals):.2f}' if vals else '–'} | {last['wall_s'] / 60:.1f} | "
              f"{(minutes_to(r['epochs'], 'val_top1', TARGET) or 'not reached') if vals else '–'} | {r.get('wall_clock')} | "
              f"{'' if rss is None else f'{rss / 1e6:.2f} GB'} |")
    for p in PROTOCOLS:
        xs = [acc[p] for acc in accs if p in acc]
        if xs:
            sd = f"{statistics.stdev(xs):.2f}" if len(xs) > 1 else "–"
            print(f"{p}: mean {statistics.mean(xs):.2f}% ± {sd} (sample sd, n = {len(xs)}, "
                  f"range {min(xs):.2f}-{max(xs):.2f}); target {TARGET}%: "
                  f"{'met' if len(xs) >= 3 and statistics.mean(xs) >= TARGET else 'not met'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a smoke run: --set train.epochs=1 --set data.subset=600 --set eval.limit=200")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the runs go (record-s<N>)")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    args.runs.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        run = args.runs / f"record-s{seed}"
        export(seed, run, train(seed, run, args.overrides), args.results)
    summary(args.results)


if __name__ == "__main__":
    main()
