"""Localisation evidence on the derived set (docs/localisation.md): per seed, the classifier
(configs/fashion-mnist/loc-classifier.yaml), then box nets initialised from it: SCR and PCR,
fine-tuning all layers or the FC layers only (Table 8's cells); each tested against the
whole-image and centre-of-mean-size baselines. One thread per run, one run at a time. The same
runs as the small budget of configs/studies/loc_ablations.yaml, which is how the published
figures were made (docs/localisation.md); this script is the sweep-free way to the same numbers.

    python benchmarks/localisation.py --seeds 0 1 2 --out runs/loc-evidence > loc.log
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from vggnet import config
from vggnet.train import rundir
from vggnet.train.trainer import fit

ROOT = Path(__file__).resolve().parents[1] / "configs" / "fashion-mnist"
ARMS = {"scr-all": ["model.box_head=scr"], "pcr-all": ["model.box_head=pcr"],
        "scr-fc": ["model.box_head=scr", "loc.finetune=fc"], "pcr-fc": ["model.box_head=pcr", "loc.finetune=fc"]}


def run(cfg: config.RunConfig, out: Path):  # noqa: ANN201 - trainer.RunResult
    """Train into ``out``; a finished run is reused (read back, not retrained), so a stopped
    benchmark picks up where it was."""
    return fit(cfg, out, resume=rundir.status(out) == "finished")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="runs/loc-evidence")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra overrides for every run")
    args = p.parse_args()
    torch.set_num_threads(1)
    out, rows = Path(args.out), []
    for seed in args.seeds:
        common = [f"seed={seed}", "train.progress=false", *args.overrides]
        t0 = time.time()
        cls = run(config.load(ROOT / "loc-classifier.yaml", common), out / f"cls-s{seed}")
        print(f"seed {seed} classifier: top-1 error {cls.test['protocols']['centre']['top1_error']:.3f} "
              f"({time.time() - t0:.0f} s)", flush=True)
        for arm, extra in ARMS.items():
            t0 = time.time()
            classifier = f"loc.classifier={out / f'cls-s{seed}' / 'model.safetensors'}"
            box = run(config.load(ROOT / "loc.yaml", [*common, classifier, *extra]), out / f"{arm}-s{seed}")
            prot = box.test["protocols"]
            row = {"seed": seed, "arm": arm, "wall_s": round(time.time() - t0, 1),
                   **{f"{k}_top1": v["top1_error"] for k, v in prot.items()},
                   "classifier_top5": prot["classifier"]["top5_error"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nlocalisation error % (test, n = {len(args.seeds)} seeds, mean ± std; load {os.getloadavg()[0]:.1f})")
    keys = ["gt_class_top1", "classifier_top1", "classifier_top5", "whole_image_top1", "centre_box_top1"]
    print("| arm | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
    for arm in ARMS:
        got = [r for r in rows if r["arm"] == arm]
        cells = [f"{100 * statistics.mean(r[k] for r in got):.1f} ± "
                 f"{100 * (statistics.stdev(r[k] for r in got) if len(got) > 1 else 0):.1f}" for k in keys]
        print(f"| {arm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
