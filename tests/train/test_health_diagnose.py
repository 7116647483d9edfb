"""diagnose(): the known cases of the paper and the seed notes, on a 32 px batch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vggnet.model.init import pre_initialise
from vggnet.model.vgg import build_model
from vggnet.train.health import diagnose


def _batch(size: int = 32, n: int = 32, channels: int = 1, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth standardised images (nearby pixels correlated, as in real images)."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.randn(n, channels, size // 4, size // 4, generator=g), size=size,
                                        mode="bilinear")
    return (x - x.mean()) / x.std(), torch.randint(0, classes, (n,), generator=g)


def _net(name: str, init: str, *, bn: bool = False, width: float = 0.25, size: int = 32):
    head, classes, channels = ("gap", 10, 1) if size == 32 else ("fc", 1000, 3)
    return build_model(name, num_classes=classes, batch_norm=bn, head=head, in_channels=channels, width=width,
                       init=init, seed=0)


@pytest.mark.parametrize("name", ["D", "E"])
def test_deep_nets_without_bn_under_std001_vanish(name):
    d = diagnose(_net(name, "std0.01"), *_batch(n=16))
    assert d.verdict == "will not train"
    assert "vanishes" in d.reason and f"{d.signal_ratio:.3g}" in d.reason
    assert d.signal_ratio < 1e-5
    assert d.layers[-2].verdict == "vanishing" and d.layers[0].verdict == "healthy"
    assert any("kaiming" in fix for fix in d.fixes)


@pytest.mark.parametrize("name", ["D", "E"])
@pytest.mark.parametrize("init,bn", [("std0.01", True), ("kaiming", False), ("glorot", True)])
def test_the_fixes_are_not_flagged(name, init, bn):
    d = diagnose(_net(name, init, bn=bn), *_batch(n=16))
    assert d.verdict == "healthy", d.reason
    assert all(r.verdict == "healthy" for r in d.layers)


@pytest.mark.parametrize("name", ["D", "E"])
def test_glorot_without_bn_is_a_slow_start(name):
    # measured: D with Glorot and no BN never left chance in 750 steps (5 of 5 runs, docs/RESULTS.md)
    d = diagnose(_net(name, "glorot"), *_batch(n=16))
    assert d.verdict == "at risk" and "gradient reaching the first conv" in d.reason, d.reason
    assert d.grad_ratio < 1e-3 and d.signal_ratio > 1e-5  # not vanished: at risk, not hopeless
    assert any("kaiming" in fix for fix in d.fixes) and any("pre-initialise" in fix for fix in d.fixes)


def test_a_under_std001_is_at_risk_not_hopeless():
    # full width: at width 0.25 each layer has 4x fewer inputs, so A also vanishes (measured, see docs)
    d = diagnose(_net("A", "std0.01", width=1.0), *_batch(n=16))
    assert d.verdict == "at risk", d.reason
    assert 1e-5 < d.signal_ratio < 1e-2


def test_d_pre_initialised_from_a_does_not_vanish():
    """A trained A passes its signal on; copying its first four convs and its head into D leaves
    9 random layers instead of 12 (and a live head). Stand-in for trained A: kaiming-scaled A."""
    x, y = _batch(n=16)
    plain = diagnose(_net("D", "std0.01", width=1.0), x, y)
    deep = pre_initialise(_net("D", "std0.01", width=1.0), _net("A", "kaiming", width=1.0))
    d = diagnose(deep, x, y)
    assert plain.verdict == "will not train"
    assert d.verdict != "will not train", d.reason
    assert d.signal_ratio > 10 * plain.signal_ratio


def test_paper_init_without_bn_explodes():
    d = diagnose(_net("D", "std0.1", width=1.0), *_batch(n=8))
    assert d.verdict == "will not train" and "explodes" in d.reason
    assert d.signal_ratio > 1e3


def test_zeroed_last_layer_is_flagged():
    model = _net("A", "kaiming", bn=True)
    torch.nn.init.zeros_(model.classifier[-1].weight)
    d = diagnose(model, *_batch())
    assert d.verdict == "at risk" and "same for every image" in d.reason
    assert d.logit_spread == 0
    assert d.layers[0].grad_norm == 0  # nothing flows below a zero layer


def test_dead_relus_are_flagged():
    model = _net("A", "kaiming", bn=True)
    with torch.no_grad():
        model.features[1].bias.fill_(-10.0)  # BN shift: the first block never fires
    d = diagnose(model, *_batch())
    assert d.layers[0].dead == 1.0 and d.layers[0].verdict == "dead"
    assert d.verdict != "healthy"


def test_diagnose_leaves_the_model_as_it_was():
    model = _net("A", "kaiming", bn=True).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = diagnose(model, *_batch())
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    out = d.to_dict()
    json.dumps(out, allow_nan=False)  # JSON-ready for --json
    assert out["verdict"] == "healthy" and len(out["layers"]) == 9
    assert "verdict: HEALTHY" in d.table() and "features.0" in d.table()
    assert math.isnan(d.layers[-1].dead)


@pytest.mark.slow
def test_at_224_d_vanishes_and_kaiming_is_healthy():
    x, _ = _batch(size=224, n=4, channels=3)
    y = torch.arange(4)
    assert diagnose(_net("D", "std0.01", width=1.0, size=224), x, y).verdict == "will not train"
    assert diagnose(_net("D", "kaiming", width=1.0, size=224), x, y).verdict == "healthy"
