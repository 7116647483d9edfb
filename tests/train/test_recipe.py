"""The typed config: paper defaults, overrides, validation messages, round trip."""

from pathlib import Path

import pytest

from vggnet.errors import ConfigError
from vggnet import config
from vggnet.config import RunConfig

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_is_the_no_argument_run():
    assert config.load(ROOT / "configs/fashion-mnist/default.yaml") == config.load(None) == RunConfig()


def test_every_shipped_config_loads():
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        if "studies" in path.parts:
            continue  # sweep specs, not run configs
        config.load(path)


def test_overrides_and_round_trip(tmp_path):
    cfg = config.load(None, ["train.lr=0.1", "model.name=vgg16_bn", "data.scale=[256, 512]", "train.max_steps=5"])
    assert cfg.train.lr == 0.1 and cfg.model.name == "vgg16_bn" and cfg.data.scale == [256, 512]
    config.dump(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override,match", [
    ("train.lrr=0.1", "did you mean 'train.lr'"),
    ("modle.name=A", "did you mean 'model'"),
    ("train.lr=fast", "train.lr must be a finite number"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("model.head=mlp", "model.head='mlp' is not one of fc, conv, gap"),
    ("model.name=F", "unknown VGG config 'F'"),
    ("data.scale=[16]", "smaller than the crop"),
    ("train.lr", "key=value"),
])
def test_bad_values_say_what_to_do(override, match):
    with pytest.raises(ConfigError, match=match):
        config.load(None, [override])


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        config.load("nope.yaml")
