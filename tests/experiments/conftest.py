"""Hand-written run directories in the formats the trainer and the evaluator write."""

import json
import sys
from pathlib import Path

import pytest
import yaml

FAKE_TRAIN = (sys.executable, str(Path(__file__).with_name("fake_train.py")), "-c", "{config}", "--out", "{dir}",
              "{resume}")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def write_run(run_dir: Path, *, with_eval: bool = True, collapsed: bool = False) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "A"}, "data": {"name": "fashion-mnist"},
                                                         "seed": 0, "name": "hand-written"}))
    lines = [{"epoch": e, "step": 50 * e, "train_loss": 2.3 / e, "train_top1": 0.2 * e, "val_loss": 2.2 / e,
              "val_top1": 0.18 * e, "lr": 0.05 / e, "images_per_s": 900.0, "wall_s": 3.0 * e} for e in (1, 2, 3, 4)]
    lines.insert(2, {"event": "dead_relu", "step": 60, "epoch": 2, "message": "38% of ReLUs in features.4 never fire",
                     "fix": "lower train.lr or use model.batch_norm=true"})
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"epoch\": 5, \"tor")
    if with_eval:
        k = len(CLASSES)
        confusion = [[(80 if i == j else 2) + (40 if collapsed and j == 0 else 0) for j in range(k)] for i in range(k)]
        (run_dir / "eval.json").write_text(json.dumps({
            "protocols": {"centre": {"top1_error": 0.123, "top5_error": 0.011, "n": 1000},
                          "dense": {"top1_error": 0.118, "top5_error": 0.010, "n": 1000}},
            "classes": CLASSES,
            "confusion": confusion,
            "per_class": {"precision": [0.9] * k, "recall": [0.8] * k, "f1": [0.85] * k, "support": [100] * k},
            "analysis": {"prediction_share": [0.1] * k, "max_share_class": "T-shirt/top", "max_share": 0.3,
                         "collapse_warning": "'T-shirt/top' takes 30% of all predictions" if collapsed else None,
                         "never_predicted": [],
                         "most_confused_pairs": [{"true": "Shirt", "predicted": "T-shirt/top", "count": 20,
                                                  "rate": 0.2}],
                         "worst_classes": [{"class": "Shirt", "recall": 0.6, "precision": 0.7, "f1": 0.65,
                                            "support": 100}]},
        }))
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run", collapsed=True)


@pytest.fixture
def make_run():
    """write_run(run_dir, with_eval=True, collapsed=False) -> run_dir."""
    return write_run


@pytest.fixture
def fake_train() -> tuple[str, ...]:
    """A sweep cell command that stands in for `vggnet train` (see fake_train.py)."""
    return FAKE_TRAIN
