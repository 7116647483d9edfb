"""Evidence that the paper's recipe trains as shipped (docs/paper.md, "Does the recipe train?").

Writes Fashion-MNIST as a 10-class ImageNet-style folder (RGB JPEGs rescaled to S=256: real
images available offline), then trains `configs/paper/A.yaml` on it unchanged but for the
budget (batch size, steps: 2 CPU cores are not 4 Titan Blacks), and takes the first steps of
`configs/paper/B.yaml` pre-initialised from that A. Prints steps, loss, accuracy and minutes.

    python benchmarks/paper_recipe.py                       # ~40 min on 2 CPU cores (A 31, B 6)
    python benchmarks/paper_recipe.py --steps 40 --b-steps 10 --per-class 20   # a smoke run
    python benchmarks/paper_recipe.py --diagnose     # `vggnet diagnose` of A for each init (a minute)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_folder(out: Path, per_class: int, test_per_class: int, size: int = 256, seed: int = 0) -> Path:
    """root/train/<class>/*.jpg and root/val/<class>/*.jpg: Fashion-MNIST images upscaled to size x size RGB."""
    from vggnet.config import DataConfig
    from vggnet.data import sources

    ds = sources.get(DataConfig(name="fashion-mnist", val_fraction=0.0), seed=seed)
    g = torch.Generator().manual_seed(seed)
    for split, images, labels, n in (("train", ds.train.images, ds.train.labels, per_class),
                                      ("val", ds.test.images, ds.test.labels, test_per_class)):
        for k, name in enumerate(ds.classes):
            folder = out / split / name.replace("/", "-").replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            index = (labels == k).nonzero().flatten()
            index = index[torch.randperm(len(index), generator=g)[:n]]
            big = F.interpolate(images[index].float(), size=(size, size), mode="bicubic", align_corners=False)
            for i, img in zip(index.tolist(), big.clamp(0, 255).round().to(torch.uint8)):
                rgb = img.expand(3, -1, -1).permute(1, 2, 0).numpy()
                Image.fromarray(rgb).save(folder / f"{split}_{i}.jpg", quality=90)
    return out


def train(config: str, out: Path, data: Path, overrides: list[str]) -> float:
    """Minutes of training; a finished run (eval.json written) is reused, so a stopped benchmark resumes."""
    if (out / "eval.json").is_file():
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"wall_s"' in line]
        print(f"reusing the finished run {out}", flush=True)
        return rows[-1]["wall_s"] / 60 if rows else float("nan")
    cmd = [sys.executable, "-m", "vggnet", "train", "-c", str(ROOT / config), "--data-dir", str(data),
           "--out", str(out), *[a for o in overrides for a in ("--set", o)]]
    start = time.time()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return (time.time() - start) / 60


def summary(run: Path, classes: int) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in rows if "epoch" in r and "event" not in r]
    evaluation = json.loads((run / "eval.json").read_text()) if (run / "eval.json").is_file() else {}
    protocols = evaluation.get("protocols") or {}
    return {"epochs": [{k: r.get(k) for k in ("epoch", "step", "train_loss", "val_top1", "lr")} for r in epochs],
            "test_top1_error": {k: v.get("top1_error") for k, v in protocols.items()},
            "chance_loss": math.log(classes)}


INITS = ("std0.1", "std0.01", "glorot", "kaiming")


def diagnose_inits(data: Path, batch: int = 16) -> list[dict]:
    """The init-signal diagnosis of configs/paper/A.yaml (full width, fc head, 224, the paper's
    input regime) on one batch of the folder's real images, for each init."""
    from vggnet import config
    from vggnet.train.health import diagnose_config

    rows = []
    for init in INITS:
        cfg = config.load(ROOT / "configs/paper/A.yaml", [f"data.dir={data}", f"model.init={init}"])
        d = diagnose_config(cfg, batch_size=batch)
        rows.append({"init": init, "verdict": d.verdict, "logit_std": d.logit_std, "loss": d.loss,
                     "chance_loss": d.chance_loss, "signal_ratio": d.signal_ratio, "grad_ratio": d.grad_ratio})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| init | verdict | logit std | initial loss (log C = 2.30) | signal ratio | gradient ratio |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{r['init']}` | {r['verdict']} | {r['logit_std']:.3g} | {r['loss']:.3g} | {r['signal_ratio']:.3g} "
              f"| {r['grad_ratio']:.3g} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/paper-recipe")
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=300, help="SGD steps of A")
    p.add_argument("--b-steps", type=int, default=54, help="SGD steps of B pre-initialised from A (2 epochs of --b-images)")
    p.add_argument("--b-images", type=int, default=240, help="training images for B's first steps")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "paper_recipe.json"),
                   help="where the summary is written (the committed figures by default)")
    p.add_argument("--diagnose", action="store_true", help="only diagnose A's init signal for each init")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for A and B (e.g. train.plateau_patience=100)")
    args = p.parse_args()
    out = Path(args.out)
    data = out / "fashion-mnist-256"
    if not (data / "train").is_dir():
        write_folder(data, args.per_class, args.test_per_class)
    if args.diagnose:
        rows = diagnose_inits(data)
        results = ROOT / "benchmarks" / "results" / "paper_recipe_diagnose.json"
        results.write_text(json.dumps({"rows": rows, "torch": torch.__version__}, indent=1))
        print(markdown(rows))
        return
    budget = [f"train.batch_size={args.batch_size}", "data.workers=2", "data.val_fraction=0.1",
              "train.checkpoint_minutes=2", "eval.protocols=[centre, dense]", *args.overrides]
    epoch_steps = math.ceil(args.per_class * 10 * 0.9 / args.batch_size)
    a_minutes = train("configs/paper/A.yaml", out / "A", data,
                      [*budget, f"train.max_steps={args.steps}", f"train.epochs={math.ceil(args.steps / epoch_steps)}"])
    b_epoch = math.ceil(args.b_images * 0.9 / args.batch_size)
    b_minutes = train("configs/paper/B.yaml", out / "B", data,
                      [*budget, f"train.max_steps={args.b_steps}", f"train.epochs={math.ceil(args.b_steps / b_epoch)}",
                       f"data.subset={args.b_images}",
                       f"model.pre_initialise={out / 'A' / 'model.safetensors'}", "eval.protocols=[centre]"])
    report = {"A": {**summary(out / "A", 10), "minutes": a_minutes},
              "B": {**summary(out / "B", 10), "minutes": b_minutes},
              "steps": {"A": args.steps, "B": args.b_steps}, "batch_size": args.batch_size,
              "train_images": args.per_class * 10, "torch": torch.__version__, "threads": torch.get_num_threads()}
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    Path(args.results).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
