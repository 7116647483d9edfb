"""Training memory before running: the activation estimate against the measured CPU peak."""

from __future__ import annotations

import json

import pytest
import torch

from vggnet.cli import main
from vggnet.errors import ConfigError
from vggnet.model.memory import activation_bytes, estimate, measured_activation_peak
from vggnet.model.vgg import build_model


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.mark.parametrize("name,batch_norm,head,size,batch", [
    ("A", False, "fc", 64, 8), ("D", True, "gap", 64, 4), ("A-LRN", False, "gap", 64, 4), ("B", False, "conv", 224, 1),
])
def test_activation_estimate_is_within_20_percent_of_the_measured_peak(name, batch_norm, head, size, batch):
    model = build_model(name, num_classes=10, width=0.25 if head != "conv" else 0.125, batch_norm=batch_norm,
                        head=head, seed=0)
    g = torch.Generator().manual_seed(0)
    measured = measured_activation_peak(model, torch.randn(batch, 3, size, size, generator=g),
                                        torch.randint(0, 10, (batch,), generator=g))
    estimated = activation_bytes(model, size, batch)
    assert measured > 2**20  # a real measurement, not an empty profile
    assert abs(estimated - measured) <= 0.2 * measured, (estimated, measured)


def test_estimate_parts_and_what_they_scale_with():
    with torch.device("meta"):
        model = build_model("D", num_classes=1000, init=None)
    fp32 = estimate(model, 224, 64)
    params = 138_357_544 * 4
    assert fp32["params"] == fp32["gradients"] == fp32["optimizer"] == params
    assert estimate(model, 224, 64, optimizer="adam")["optimizer"] == 2 * params
    assert fp32["total"] == sum(v for k, v in fp32.items() if k != "total")
    assert 3.5 * 2**30 < fp32["activations"] < 5.5 * 2**30  # ~68 MB an image at 224
    assert abs(activation_bytes(model, 224, 128) / fp32["activations"] - 2) < 0.01  # linear in the batch
    assert activation_bytes(model, 224, 64, amp=True) < fp32["activations"]
    with pytest.raises(ConfigError, match="valid: sgd, adam"):
        estimate(model, 224, 64, optimizer="lamb")


def test_summary_memory_command(capsys):
    assert main(["summary", "--memory", "--image-size", "224", "--batch-size", "64", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["A", "A-LRN", "B", "B-5x5", "C", "D", "E"]
    assert rows["A"]["total"] < rows["D"]["total"] < rows["E"]["total"]
    assert main(["summary", "--memory", "--amp"]) == 0
    out = capsys.readouterr().out
    assert "16-bit autocast" in out and out.splitlines()[1].split()[-1] == "(GiB)"


def test_checkpointing_activations_keeps_gradients_and_statistics_and_saves_memory():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 64, 64, generator=g), torch.randint(0, 10, (4,), generator=g)
    runs = {}
    for flag in (False, True):
        model = build_model("B", num_classes=10, width=0.25, batch_norm=True, head="gap", seed=0).train()
        model.checkpoint_activations = flag
        torch.nn.functional.cross_entropy(model(x), y).backward()
        peak = measured_activation_peak(model, x, y)
        runs[flag] = (model, peak)
    plain, checkpointed = runs[False][0], runs[True][0]
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    for key, value in plain.state_dict().items():  # BN running statistics counted once, not twice
        assert torch.allclose(checkpointed.state_dict()[key], value, atol=1e-6), key
    assert runs[True][1] < 0.5 * runs[False][1]
