"""`vggnet diagnose` through the real data path: the default Fashion-MNIST run is healthy."""

from __future__ import annotations

import argparse
import json

from vggnet.cli import diagnose as diagnose_cli
from vggnet import config
from vggnet.train.health import diagnose_config


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    diagnose_cli.register(parser.add_subparsers())
    args = parser.parse_args(["diagnose", *argv])
    return args.func(args)


def test_default_fashion_mnist_config_is_healthy():
    cfg = config.load(None, ["model.width=0.25"])
    d = diagnose_config(cfg, batch_size=32)
    assert d.verdict == "healthy", d.reason
    assert d.chance_loss == __import__("math").log(10) and d.layers[0].kind == "conv3x3"


def test_cli_json_and_exit_code(capsys):
    base = ["--set", "data.name=synthetic", "--set", "model.width=0.25", "--batch-size", "16"]
    assert _run(base + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verdict"] == "healthy" and out["model"]["name"] == config.RunConfig().model.name  # the default net
    bad = base + ["--set", "model.name=E", "--set", "model.batch_norm=false", "--set", "model.init=std0.01"]
    assert _run(bad) == 1  # "will not train" is a failing exit status for scripts
    text = capsys.readouterr().out
    assert "WILL NOT TRAIN" in text and "signal ratio" in text and "fix:" in text
