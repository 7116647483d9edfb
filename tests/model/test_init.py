"""Initialisation statistics (paper 3.1) and pre-initialisation from a trained A."""

import pytest
import torch
from torch import nn

import vggnet
from vggnet.errors import WeightsError


def weights_of(model, kind):
    return [m.weight for m in model.modules() if isinstance(m, kind)]


@pytest.mark.parametrize("scheme,std", [("std0.1", 0.1), ("std0.01", 0.01)])
def test_gaussian_inits_have_the_stated_std(scheme, std):
    model = vggnet.build_model("A", num_classes=10, width=0.25, init=scheme, seed=0)
    for w in weights_of(model, (nn.Conv2d, nn.Linear)):
        if w.numel() > 5000:
            assert w.std().item() == pytest.approx(std, rel=0.05)
            assert abs(w.mean().item()) < std * 0.05
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_glorot_and_kaiming_scales():
    g = vggnet.build_model("A", num_classes=10, width=0.25, init="glorot", seed=0)
    conv = weights_of(g, nn.Conv2d)[3]
    fan_in, fan_out = conv.shape[1] * 9, conv.shape[0] * 9
    assert conv.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05)
    k = vggnet.build_model("A", num_classes=10, width=0.25, init="kaiming", seed=0)
    conv = weights_of(k, nn.Conv2d)[3]
    assert conv.std().item() == pytest.approx((2 / (conv.shape[0] * 9)) ** 0.5, rel=0.05)
    assert weights_of(k, nn.Linear)[0].std().item() == pytest.approx(0.01, rel=0.05)


def test_batchnorm_init():
    model = vggnet.build_model("A", batch_norm=True, width=0.25, init="std0.1")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert (m.weight == 1).all() and (m.bias == 0).all()


def test_seeded_init_is_reproducible():
    a = vggnet.build_model("B", width=0.125, init="std0.1", seed=3)
    b = vggnet.build_model("B", width=0.125, init="std0.1", seed=3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("deep", ["B", "C", "D", "E"])
def test_pre_initialise_copies_first_four_convs_and_fc(deep):
    a = vggnet.build_model("A", num_classes=10, width=0.125, init="std0.1", seed=1)
    d = vggnet.build_model(deep, num_classes=10, width=0.125, init="glorot", seed=2)
    before = [w.clone() for w in weights_of(d, nn.Conv2d)]
    vggnet.pre_initialise(d, a)
    a_convs, d_convs = weights_of(a, nn.Conv2d), weights_of(d, nn.Conv2d)
    per_block = {"B": [2, 2, 2, 2, 2], "C": [2, 2, 3, 3, 3], "D": [2, 2, 3, 3, 3], "E": [2, 2, 4, 4, 4]}[deep]
    starts = [sum(per_block[:b]) for b in range(5)]
    targets = [starts[0], starts[1], starts[2], starts[2] + 1]  # conv1_1, conv2_1, conv3_1, conv3_2
    for src, dst in zip(a_convs[:4], targets):
        assert torch.equal(src, d_convs[dst])
    for i in set(range(len(d_convs))) - set(targets):
        assert torch.equal(before[i], d_convs[i])
    for i in (0, 3, 6):
        assert torch.equal(a.classifier[i].weight, d.classifier[i].weight)


def test_pre_initialise_refuses_mismatched_shapes():
    a = vggnet.build_model("A", num_classes=10, width=0.125)
    d = vggnet.build_model("D", num_classes=10, width=0.25)
    with pytest.raises(WeightsError, match="cannot pre-initialise D from A"):
        vggnet.pre_initialise(d, a)


def test_pre_initialise_refuses_a_net_without_as_first_convs():
    a = vggnet.build_model("A", num_classes=10, width=0.125)
    shallow = vggnet.build_model("B-5x5", num_classes=10, width=0.125)
    with pytest.raises(WeightsError, match="B-5x5 has no conv3_2"):
        vggnet.pre_initialise(shallow, a)
