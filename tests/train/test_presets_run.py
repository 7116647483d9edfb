"""Every Fashion-MNIST classification preset resolves and trains a few steps end to end (their
timings are benchmarks: BENCHMARKS.md)."""

from pathlib import Path

import pytest

from vggnet import config
from vggnet.train.trainer import fit

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ["default", "record"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_a_few_steps(tmp_path, name):
    cfg = config.load(ROOT / "configs" / "fashion-mnist" / f"{name}.yaml",
                      ["data.subset=600", "train.epochs=1", "train.max_steps=2", "eval.limit=64",
                       "train.progress=false", "train.health_every=0"])
    result = fit(cfg, tmp_path / name)
    assert result.metrics and result.metrics[-1]["step"] == 2
    assert 0 <= result.test["protocols"]["dense"]["top1_error"] <= 1
    assert (tmp_path / name / "report.html").is_file()


def test_record_preset_is_one_vgg_of_the_family_without_extra_data():
    cfg = config.load(ROOT / "configs" / "fashion-mnist" / "record.yaml")
    assert cfg.model.name in ("A", "B", "C", "D", "E") and cfg.model.width <= 1
    assert cfg.data.name == "fashion-mnist" and "dense" in cfg.eval.protocols
