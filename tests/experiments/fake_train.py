"""A stand-in for `vggnet train` in sweep tests: reads the cell config, writes what a run writes.

Behaviour from the config: train.lr == 0.666 fails like a diverged run; train.epochs == 99
sleeps on its first call (a long cell, to be interrupted); data.num_classes sets the class count. Every call is
appended to the cell's calls.txt so tests can count (re)runs.
"""

import json
import sys
import time
from pathlib import Path

import yaml

args = sys.argv[1:]
config = Path(args[args.index("-c") + 1])
out = Path(args[args.index("--out") + 1])
cfg = yaml.safe_load(config.read_text())
calls = out / "calls.txt"
first = not calls.is_file()
with open(calls, "a") as fh:
    fh.write(" ".join(args) + "\n")
if cfg["train"]["lr"] == 0.666:
    print("vggnet train: error: loss became nan at step 12; lower train.lr", file=sys.stderr)
    sys.exit(2)
if cfg["train"]["epochs"] == 99 and first:
    time.sleep(60)
seed = cfg["seed"]
classes = [f"c{i}" for i in range(cfg["data"]["num_classes"])]
error = 0.9 if seed == 2 else 0.2 + 0.01 * seed  # seed 2 "never learns"
with open(out / "metrics.jsonl", "w") as fh:
    for epoch in (1, 2, 3):
        fh.write(json.dumps({"epoch": epoch, "step": 10 * epoch, "train_loss": 2.0 / epoch, "train_top1": 0.3 * epoch,
                             "val_loss": 2.1 / epoch, "val_top1": 0.25 * epoch, "lr": 0.1 / epoch,
                             "images_per_s": 100.0, "wall_s": 1.0 * epoch}) + "\n")
(out / "eval.json").write_text(json.dumps({
    "protocols": {"centre": {"top1_error": error, "top5_error": error / 4, "n": 100},
                  "dense": {"top1_error": error - 0.01, "top5_error": error / 5, "n": 100}},
    "classes": classes,
    "confusion": [[10 if i == j else 1 for j in range(len(classes))] for i in range(len(classes))],
}))
