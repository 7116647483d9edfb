"""Every config x BN x head: shapes, gradients, NaNs; dense == fc; bad arguments."""

import copy

import pytest
import torch

import vggnet
from vggnet.errors import ConfigError

NAMES = ["A", "A-LRN", "B", "B-5x5", "C", "D", "E"]


@pytest.mark.parametrize("head", ["fc", "conv", "gap"])
@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_every_config(name, batch_norm, head):
    size = 224 if head == "conv" else 32
    model = vggnet.build_model(name, num_classes=7, batch_norm=batch_norm, head=head, width=0.0625,
                               in_channels=3 if head != "gap" else 1)
    x = torch.randn(2, model.config["in_channels"], size, size)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert sum(p.grad.abs().sum() > 0 for p in model.parameters()) > 0


@pytest.mark.parametrize("size", [28, 32])
def test_small_inputs(size):
    model = vggnet.build_model("E", num_classes=10, batch_norm=True, head="gap", width=0.125, in_channels=1)
    if size < 32:
        with pytest.raises(ConfigError, match="minimum size is 32x32"):
            model(torch.randn(1, 1, size, size))
    else:
        assert model(torch.randn(1, 1, size, size)).shape == (1, 10)


def test_conv_head_equals_fc_head_at_224():
    fc = vggnet.build_model("A", num_classes=5, width=0.125).eval()
    conv = vggnet.convert_head(copy.deepcopy(fc), "conv")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), fc(x), rtol=1e-4, atol=1e-5)
        back = vggnet.convert_head(copy.deepcopy(conv), "fc")
        torch.testing.assert_close(back(x), fc(x), rtol=1e-4, atol=1e-5)


def test_conv_head_on_256_averages_the_score_map():
    model = vggnet.build_model("A", num_classes=5, head="conv", width=0.125).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        score = model.score_map(model.forward_features(x))
        assert score.shape == (1, 5, 2, 2)
        torch.testing.assert_close(model(x), score.mean((2, 3)))


def test_conv_head_rejects_small_input():
    model = vggnet.build_model("A", num_classes=5, head="conv", width=0.125)
    with pytest.raises(ConfigError, match="224x224"):
        model(torch.randn(1, 3, 200, 200))


def test_forward_split_and_pre_logits():
    model = vggnet.build_model("B", num_classes=4, width=0.125).eval()
    x = torch.randn(1, 3, 224, 224)
    feats = model.forward_features(x)
    assert feats.shape == (1, 64, 7, 7)
    assert model.forward_head(feats, pre_logits=True).shape == (1, 512)
    torch.testing.assert_close(model.forward_head(feats), model(x))


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "F"}, "valid: A, A-LRN, B, B-5x5, C, D, E"),
    ({"num_classes": 0}, "num_classes"),
    ({"width": 0}, "width"),
    ({"width": -1.0}, "width"),
    ({"head": "mlp"}, "valid: fc, conv, gap"),
    ({"init": "zeros"}, "valid: std0.1, std0.01"),
])
def test_bad_arguments(kwargs, match):
    args = {"name": "A", **kwargs}
    with pytest.raises(ConfigError, match=match):
        vggnet.build_model(args.pop("name"), **args)


def test_cli_bad_input_is_one_line_exit_2(capsys):
    from vggnet.cli import main

    assert main(["summary", "--num-classes", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "num_classes" in err


@pytest.mark.parametrize("box_head,outputs", [("scr", 4), ("pcr", 4 * 7)])
def test_box_heads_replace_the_last_layer_only(box_head, outputs):
    model = vggnet.build_model("D", num_classes=7, head="fc", width=0.0625, box_head=box_head)
    plain = vggnet.build_model("D", num_classes=7, head="fc", width=0.0625)
    assert model.classifier[6].out_features == outputs
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.startswith("classifier.6")}  # noqa: E731
    assert shapes(model) == shapes(plain)
    out = model(torch.randn(3, 3, 32, 32))
    assert model.boxes(out).shape == (3, outputs // 4, 4)
    picked = model.boxes(out, torch.tensor([0, 6, 2]))
    assert picked.shape == (3, 4)
    if box_head == "pcr":  # each image's box of its class: outputs 4c..4c+3
        assert torch.equal(picked[1], out[1, 24:28]) and torch.equal(picked[2], out[2, 8:12])
    dense = vggnet.convert_head(model, "conv")
    assert dense.boxes(dense.score_map(dense.forward_features(torch.randn(1, 3, 256, 256)))).shape == \
        (1, outputs // 4, 2, 2, 4)
    rebuilt = vggnet.model.vgg.from_config(model.config)
    assert rebuilt.config["box_head"] == box_head


def test_unknown_box_head_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown box head 'xyz'; valid: scr, pcr"):
        vggnet.build_model("D", box_head="xyz")
    with pytest.raises(ConfigError, match="needs a box head"):
        vggnet.build_model("A", num_classes=3, width=0.0625).boxes(torch.zeros(1, 3))
