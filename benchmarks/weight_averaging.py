"""Does an average of the weights give the default run more accuracy for free? (BENCHMARKS.md,
"The default run: time to 93.5%"). One `vggnet train` run with no arguments but the seed; beside
it, exponential moving averages of its weights (several decays) and equal averages of every
step's weights from a late epoch on (SWA-style), all kept in the same run
(`torch.optim.swa_utils.AveragedModel`, BN buffers averaged with the weights). At the end each is
scored with the paper's dense protocol and the centre view on all 10,000 test images, paired with
the run's own final weights. Accuracy only: the averages' updates make the run's time meaningless.

    python benchmarks/weight_averaging.py --seed 0     # ~5 min of training alone on 2 CPU cores
    python benchmarks/weight_averaging.py --set train.epochs=1 --set data.subset=600 --out /tmp/wa  # a smoke run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vggnet import config
from vggnet.eval.protocols import evaluate
from vggnet.train import trainer as T

ROOT = Path(__file__).resolve().parents[1]
DECAYS = (0.99, 0.995, 0.998, 0.999)  # 211 steps per epoch: time constants of 0.5 to 5 epochs
SWA_FROM = (13, 15)  # epochs of 16, counted from 1: the last 4 and the last 2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default runs/weight_averaging_seed<N>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a smoke run: --set train.epochs=1 --set data.subset=500")
    args = p.parse_args()
    cfg = config.load(ROOT / "configs/fashion-mnist/default.yaml",
                      [f"seed={args.seed}", "train.progress=false", *args.overrides])
    averages: dict[str, tuple[AveragedModel, int]] = {}  # name -> (average, first epoch it takes in)
    result: dict = {"seed": args.seed, "config": "configs/fashion-mnist/default.yaml"}
    train_step, finish = T.Trainer.train_step, T.Trainer.finish

    def step(self, x, y):
        out = train_step(self, x, y)
        if not averages:
            for d in DECAYS:
                ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
                averages[f"ema{d}"] = (ema, 1)
            for e in SWA_FROM:
                averages[f"swa_from_epoch{e}"] = (AveragedModel(self.model, use_buffers=True), e)
        for avg, first in averages.values():
            if self.epoch + 1 >= first:
                avg.update_parameters(self.model)
        return out

    def score(self, model) -> dict[str, float]:
        r = evaluate(model, self.ds, self.cfg, self.stats, split="test", protocols=("centre", "dense"),
                     device=self.device)
        return {p: round(100 * (1 - v["top1_error"]), 2) for p, v in r["protocols"].items()}

    def scored_finish(self):
        result["final"] = score(self, self.model)
        result.update({name: score(self, avg.module) for name, (avg, _) in averages.items()})
        return finish(self)

    T.Trainer.train_step, T.Trainer.finish = step, scored_finish
    T.fit(cfg, args.out or ROOT / f"runs/weight_averaging_seed{args.seed}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
