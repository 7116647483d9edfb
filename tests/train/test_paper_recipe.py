"""benchmarks/paper_recipe.py, the evidence that configs/paper/A.yaml and B.yaml train as shipped
(docs/paper.md): the image folder it writes, and (slow) a shortened run of the whole chain."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import paper_recipe  # noqa: E402


def test_the_folder_is_fashion_mnist_as_rgb_jpegs_at_s_256(tmp_path):
    root = paper_recipe.write_folder(tmp_path / "f", per_class=2, test_per_class=1)
    train = sorted((root / "train").iterdir())
    assert len(train) == 10 and all(len(list(d.glob("*.jpg"))) == 2 for d in train)
    assert all(len(list(d.glob("*.jpg"))) == 1 for d in (root / "val").iterdir())
    img = Image.open(next(train[0].glob("*.jpg")))
    assert img.size == (256, 256) and img.mode == "RGB"


@pytest.mark.slow
def test_a_then_b_pre_initialised_train_with_finite_losses(tmp_path):
    """~10 min on 2 cores: A at full width, fc head, 224 crops, batch 8, then B from that A."""
    out = tmp_path / "recipe"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paper_recipe.py"), "--out", str(out),
                           "--per-class", "8", "--test-per-class", "2", "--steps", "27", "--b-steps", "6",
                           "--b-images", "60", "--results", str(tmp_path / "summary.json")],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "[preflight] warning (pre-initialised, trained anyway)" in proc.stdout + proc.stderr  # B, not A
    summary = json.loads((out / "summary.json").read_text())
    for net in ("A", "B"):
        losses = [e["train_loss"] for e in summary[net]["epochs"]]
        assert losses and all(math.isfinite(x) for x in losses), (net, losses)
        assert 0 <= summary[net]["test_top1_error"]["centre"] <= 1
    assert [e["step"] for e in summary["A"]["epochs"]][-1] == 27
