"""Fine-tuning surgery: new head, groups, freezing (no gradient, no change), and the command."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vggnet.errors import ConfigError
from vggnet.model.vgg import build_model
from vggnet.transfer import finetune as ft


def _pretrained(batch_norm=True, head="fc"):
    model = build_model("A", num_classes=1000, width=0.125, batch_norm=batch_norm, head=head, seed=0)
    for m in model.modules():  # pretend-trained BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("head", ["fc", "conv", "gap"])
def test_new_head_keeps_the_rest(head):
    model = _pretrained(head=head)
    before = copy.deepcopy(model.state_dict())
    ft.replace_head(model, 7, seed=0)
    size = 224 if head == "conv" else 32
    assert model.eval()(torch.randn(2, 3, size, size)).shape == (2, 7)
    assert model.config["num_classes"] == 7
    last = f"classifier.{len(model.classifier) - 1}."
    for key, value in model.state_dict().items():
        if not key.startswith(last):
            assert torch.equal(value, before[key]), key


def test_groups_follow_the_paper_blocks():
    groups = ft.layer_groups(_pretrained(batch_norm=False))
    convs = {name: sum(isinstance(m, torch.nn.Conv2d) for m in mods) for name, mods in groups.items()}
    assert convs == {"block1": 1, "block2": 1, "block3": 2, "block4": 2, "block5": 2, "fc": 0, "head": 0}
    assert len(groups["fc"]) == 6 and isinstance(groups["head"][0], torch.nn.Linear)


def test_scales_per_mode():
    assert ft.group_scales("frozen")["block3"] == 0 and ft.group_scales("frozen")["fc"] == 1
    full = ft.group_scales("full", features_lr_scale=0.1)
    assert full["block1"] == 0.1 and full["head"] == 1
    custom = ft.group_scales("groups", scales={"block1": 0, "fc": 0.5})
    assert custom["block1"] == 0 and custom["block2"] == 1 and custom["fc"] == 0.5
    with pytest.raises(ConfigError, match="unknown layer group 'blok1'"):
        ft.group_scales("groups", scales={"blok1": 0})
    with pytest.raises(ConfigError, match="every group is frozen"):
        ft.group_scales("frozen", scales={"fc": 0, "head": 0})
    with pytest.raises(ConfigError, match="unknown fine-tuning mode"):
        ft.group_scales("partial")


def _sgd_steps(model, groups, steps=3, lr=0.1):
    opt = torch.optim.SGD([{"params": g["params"], "lr": lr * g["lr_scale"]} for g in groups], lr=lr)
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(8, 3, 32, 32, generator=g) * 2 + 1, torch.randint(0, 4, (8,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_frozen_layers_get_no_gradient_and_do_not_change():
    model = _pretrained(batch_norm=True)
    groups = ft.prepare(model, 4, "frozen", seed=0)
    features_before = copy.deepcopy(model.features.state_dict())  # BN running stats included
    head_before = copy.deepcopy(model.classifier.state_dict())
    assert {g["name"] for g in groups} == {"fc", "head"}
    _sgd_steps(model, groups)
    assert all(p.grad is None and not p.requires_grad for p in model.features.parameters())
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, features_before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.classifier.state_dict().items())


def test_groups_mode_freezes_only_scale_zero_and_scales_the_rest():
    model = _pretrained(batch_norm=True)
    groups = ft.prepare(model, 4, "groups", scales={"block1": 0, "block2": 0.1})
    assert {g["name"]: g["lr_scale"] for g in groups} == {"block2": 0.1, "block3": 1, "block4": 1, "block5": 1,
                                                           "fc": 1, "head": 1}
    before = copy.deepcopy(model.state_dict())
    _sgd_steps(model, groups)
    after = model.state_dict()
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])  # block1 conv
    assert torch.equal(after["features.1.running_mean"], before["features.1.running_mean"])  # block1 BN
    assert not torch.equal(after["features.4.weight"], before["features.4.weight"])  # block2 conv


def test_full_mode_trains_everything():
    model = _pretrained(batch_norm=False)
    groups = ft.prepare(model, 4, "full", features_lr_scale=0.1)
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_finetune_runs_through_the_trainer(tmp_path):
    from vggnet.weights.native import load_weights
    from vggnet import config
    from vggnet.weights.formats import save_as

    source = _pretrained(batch_norm=True, head="gap")
    save_as(source, tmp_path / "pre.safetensors")
    cfg = config.from_dict({"data": {"name": "synthetic", "num_classes": 3, "num_train": 96, "num_test": 32},
                            "train": {"epochs": 1, "batch_size": 32, "amp": False, "progress": False,
                                      "health_every": 0}, "device": "cpu"})
    result = ft.finetune(tmp_path / "pre.safetensors", cfg, tmp_path / "run", mode="frozen")
    tuned = load_weights(result.out_dir / "model.safetensors")
    record = json.loads((result.out_dir / "finetune.json").read_text())
    assert record["mode"] == "frozen" and "block1" in record["frozen"]
    assert tuned.config["num_classes"] == 3
    for key, value in source.features.state_dict().items():
        assert torch.equal(tuned.features.state_dict()[key], value), key
