"""Every layer by the Caffe release's name, features_at, timm's features_only / feature_info, and
reset_classifier."""

from __future__ import annotations


import pytest
import torch

from vggnet.errors import ConfigError
from vggnet.model.vgg import build_model, convert_head, from_config


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_names_are_the_caffe_releases():
    d = list(build_model("D", width=0.125, init=None).named_layers())
    assert d[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert [n for n in d if n.startswith("conv")][-3:] == ["conv5_1", "conv5_2", "conv5_3"]
    assert [n for n in d if n.startswith("pool")] == [f"pool{i}" for i in range(1, 6)]
    assert d[-7:] == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]
    e = build_model("E", width=0.125, batch_norm=True, init=None).named_layers()
    assert "conv5_4" in e and "bn5_4" in e and isinstance(e["bn5_4"], torch.nn.BatchNorm2d)
    assert isinstance(e["conv3_4"], torch.nn.Conv2d) and isinstance(e["pool3"], torch.nn.MaxPool2d)
    assert "norm1" in build_model("A-LRN", width=0.125, init=None).named_layers()
    assert list(build_model("A", width=0.125, head="gap", init=None).named_layers())[-1] == "fc8"
    c = build_model("C", width=0.125, init=None).named_layers()
    assert c["conv3_3"].kernel_size == (1, 1)  # C's 1x1 convs keep their place in the names


def test_features_at_matches_the_modules_in_one_pass():
    model = build_model("D", num_classes=7, width=0.125, seed=0).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    index = list(model.named_layers()).index("relu3_3")
    calls = []
    model.classifier[0].register_forward_hook(lambda *_: calls.append("fc6"))
    with torch.no_grad():
        early = model.features_at(x, ["relu3_3", "conv1_1"])
        assert calls == []  # stopped at relu3_3: the head never ran
        out = model.features_at(x, ["conv1_1", "relu3_3", "pool5", "fc7", "relu7", "fc8"])
        assert torch.equal(out["relu3_3"], model.features[: index + 1](x))
        assert torch.equal(out["pool5"], model.forward_features(x))
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.allclose(out["relu7"], pre_logits) and torch.allclose(out["fc7"].clamp(min=0), pre_logits)
        assert (out["fc7"] < 0).any()  # fc7 is before relu7
        assert torch.allclose(out["fc8"], model(x))
        assert (out["conv1_1"] < 0).any()  # before its ReLU: not overwritten by the in-place ReLU
    assert list(early) == ["relu3_3", "conv1_1"] and torch.equal(early["conv1_1"], out["conv1_1"])
    convert_head(model, "conv")
    with torch.no_grad():
        scores = model.features_at(x, "fc8")["fc8"]
    assert scores.shape == (2, 7, 1, 1) and torch.allclose(scores.mean((2, 3)), out["fc8"], atol=1e-5)


def test_a_missing_layer_lists_the_valid_names():
    model = build_model("A", width=0.125, init=None)
    valid = ", ".join(model.named_layers())
    for names, missing in ((["relu5_3"], "relu5_3"), (["nope"], "nope"), (["pool5", "nope"], "nope")):
        with pytest.raises(ConfigError) as error:
            model.features_at(torch.zeros(1, 3, 32, 32), names)
        assert str(error.value) == f"no layer named {missing!r} in VGG-A; valid: {valid}"
    assert valid.startswith("conv1_1, relu1_1, pool1, conv2_1") and valid.endswith("fc7, relu7, drop7, fc8")


def test_feature_info_and_features_only_are_timms():
    model = build_model("D", width=0.25, features_only=True, seed=0)
    info = model.feature_info
    assert [i["reduction"] for i in info] == [1, 2, 4, 8, 16, 32]
    assert [i["num_chs"] for i in info] == [16, 32, 64, 128, 128, 128]
    assert [i["name"] for i in info] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool5"]
    assert not any(k.startswith("classifier") for k in model.state_dict())
    maps = model(torch.randn(1, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(1, i["num_chs"], 64 // i["reduction"], 96 // i["reduction"])
                                            for i in info]
    picked = from_config({**model.config, "out_indices": [2, 5]})
    assert [m.shape[1] for m in picked(torch.randn(1, 3, 64, 64))] == [64, 128]
    full = build_model("D", width=0.25, seed=0)
    missing, unexpected = model.load_state_dict(full.state_dict(), strict=False)
    assert missing == [] and all(k.startswith("classifier") for k in unexpected)
    with pytest.raises(ConfigError, match="out_indices"):
        build_model("D", width=0.25, features_only=True, out_indices=[6])


@pytest.mark.parametrize("head", ["fc", "conv", "gap"])
def test_reset_classifier_keeps_the_rest(head):
    model = build_model("A", num_classes=10, width=0.125, head=head, seed=0)
    model.metadata = {"classes": [str(i) for i in range(10)]}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(3, seed=1)
    after = model.state_dict()
    last = "classifier.0" if head == "gap" else "classifier.6"
    assert after[f"{last}.weight"].shape[0] == 3 and model.config["num_classes"] == 3
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith(last))
    assert "classes" not in model.metadata  # the old class names no longer apply
    size = 224 if head == "conv" else 32
    assert model(torch.randn(1, 3, size, size)).shape == (1, 3)

