"""Paper Table 1 and 2: layer order, the 1x1 convs of C, LRN placement, exact counts."""

import pytest
import torch
from torch import nn

import vggnet
from vggnet.cli.summary import family
from vggnet.model.architectures import CONFIGS, weight_layers
from vggnet.model.vgg import AlexNetLRN


def _b5x5_params() -> int:
    """Section 4.1's shallow net by hand: B's five pairs of 3x3 convs as one 5x5 conv each
    (weights 5*5*in*out plus out biases), then the paper's three FC layers."""
    widths = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 512)]
    convs = sum(5 * 5 * cin * cout + cout for cin, cout in widths)
    fcs = (7 * 7 * 512 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    return convs + fcs


PARAMS = {"A": 132_863_336, "A-LRN": 132_863_336, "B": 133_047_848, "B-5x5": _b5x5_params(),
          "C": 133_638_952, "D": 138_357_544, "E": 143_667_240}
GMACS = {"A": 7.61, "B": 11.31, "D": 15.47, "E": 19.63}
LAYERS = {"A": 11, "A-LRN": 11, "B": 13, "B-5x5": 8, "C": 16, "D": 16, "E": 19}


def meta_model(name, **kw):
    with torch.device("meta"):
        return vggnet.build_model(name, init=None, **kw)


@pytest.mark.parametrize("name", PARAMS)
def test_exact_parameter_counts(name):
    assert vggnet.count_params(meta_model(name)) == PARAMS[name]


@pytest.mark.parametrize("name", GMACS)
def test_macs_at_224_within_half_percent(name):
    macs = vggnet.count_macs(meta_model(name), 224) / 1e9
    assert macs == pytest.approx(GMACS[name], rel=0.005)


@pytest.mark.parametrize("name", LAYERS)
def test_weight_layer_counts(name):
    model = meta_model(name)
    n = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert n == LAYERS[name] == weight_layers(name)


def test_conv_widths_and_pools():
    model = meta_model("E")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) and c.stride == (1, 1) for c in convs)
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)


def test_c_has_1x1_convs_as_third_conv_of_blocks_3_to_5():
    model = meta_model("C")
    kernels, block = [], []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            block.append(m.kernel_size[0])
        elif isinstance(m, nn.MaxPool2d):
            kernels.append(block)
            block = []
    assert kernels == [[3, 3], [3, 3], [3, 3, 1], [3, 3, 1], [3, 3, 1]]


def _receptive_rows(name):
    """Rows of the first block's output that an impulse at row 16 reaches (weights all 1)."""
    model = vggnet.build_model(name, width=0.125, init=None)
    block = model.features[:[isinstance(m, nn.MaxPool2d) for m in model.features].index(True)]
    for m in block:
        if isinstance(m, nn.Conv2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 16, 16] = 1.0
    with torch.no_grad():
        out = block(x)[0].sum(0)
    return out.nonzero()[:, 0].unique().tolist()


def test_b5x5_is_b_with_each_pair_of_3x3_convs_as_one_5x5():
    shallow, b = meta_model("B-5x5"), meta_model("B")
    convs = [m for m in shallow.features if isinstance(m, nn.Conv2d)]
    pairs = [m for m in b.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [c.out_channels for c in pairs[1::2]]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
    assert _receptive_rows("B-5x5") == _receptive_rows("B") == list(range(14, 19))  # section 2.3
    assert sum(isinstance(m, nn.MaxPool2d) for m in shallow.features) == 5
    assert vggnet.count_params(shallow) > PARAMS["B"]  # 5x5 = 25 weights > 2 x 9 per channel pair


def test_relu_after_every_weight_layer_and_lrn_after_first_conv():
    feats = list(meta_model("A-LRN").features)
    assert isinstance(feats[0], nn.Conv2d) and isinstance(feats[1], nn.ReLU)
    assert isinstance(feats[2], AlexNetLRN) and isinstance(feats[3], nn.MaxPool2d)
    assert sum(isinstance(m, AlexNetLRN) for m in feats) == 1
    for i, m in enumerate(feats):
        if isinstance(m, nn.Conv2d):
            assert isinstance(feats[i + 1], nn.ReLU)


def test_lrn_matches_alexnet_formula():
    lrn = AlexNetLRN()
    x = torch.randn(2, 8, 5, 5) * 30
    out = lrn(x)
    sq = x.pow(2)
    ref = torch.empty_like(x)
    for c in range(8):
        lo, hi = max(0, c - 2), min(8, c + 3)
        ref[:, c] = x[:, c] / (2.0 + 1e-4 * sq[:, lo:hi].sum(1)) ** 0.75
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_fc_head_layout_and_dropout():
    model = meta_model("D")
    cls = model.classifier
    assert [type(m) for m in cls] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert (cls[0].in_features, cls[0].out_features, cls[3].out_features, cls[6].out_features) == (25088, 4096, 4096, 1000)
    assert cls[2].p == cls[5].p == 0.5


def test_aliases_and_list_models():
    names = vggnet.list_models()
    assert names[:len(CONFIGS)] == list(CONFIGS)
    assert {"vgg11", "vgg13", "vgg16", "vgg19", "vgg16_bn"} <= set(names)
    assert meta_model("vgg16").config["name"] == "D"
    bn = meta_model("vgg19_bn")
    assert bn.config["name"] == "E" and bn.config["batch_norm"]
    assert any(isinstance(m, nn.BatchNorm2d) for m in bn.features)


def test_summary_family_rows():
    rows = family()
    assert [r["name"] for r in rows] == list(CONFIGS)
    assert {r["name"]: r["params"] for r in rows} == PARAMS
