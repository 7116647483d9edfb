"""`vggnet train` diagnoses the init before step 1: it refuses a net that will not train (one
line, exit 2) unless train.force, and only warns for a pre-initialised net (the paper's chain)."""

import pytest

from vggnet.errors import ConfigError
from vggnet.train.trainer import fit

# std0.01 at width 1/8 without BN: the signal vanishes (logit std ~1e-7), `vggnet diagnose` says so
VANISHING = ("model.batch_norm=false", "model.init=std0.01", "train.epochs=1", "train.max_steps=2")


def test_a_net_that_will_not_train_is_refused_before_step_1(tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match=r"will not train \(the signal vanishes.*train\.force=true"):
        fit(tiny_cfg(*VANISHING), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before anything was written


def test_train_force_trains_it_anyway(tmp_path, tiny_cfg):
    result = fit(tiny_cfg(*VANISHING, "train.force=true"), tmp_path / "run")
    assert [m["step"] for m in result.metrics if "train_loss" in m] == [2]


def test_a_pre_initialised_net_is_warned_about_not_refused(tmp_path, tiny_cfg, capsys):
    fit(tiny_cfg("model.batch_norm=false", "model.init=glorot", "train.epochs=1", "train.max_steps=2"),
        tmp_path / "A")
    capsys.readouterr()
    cfg = tiny_cfg(*VANISHING, "model.name=B", f"model.pre_initialise={tmp_path / 'A' / 'model.safetensors'}")
    fit(cfg, tmp_path / "B")
    out = capsys.readouterr().out
    assert "[preflight] warning (pre-initialised, trained anyway): this config will not train" in out
    assert (tmp_path / "B" / "model.safetensors").is_file()
