"""ONNX (onnxruntime) and TorchScript exports match PyTorch within 1e-4, with a dynamic batch."""

from __future__ import annotations

import json

import pytest
import torch

from vggnet.cli import main
from vggnet.errors import ConfigError
from vggnet.model.vgg import build_model
from vggnet.transfer.export import export, max_difference
from vggnet.weights.formats import load_pretrained, save_as
from vggnet.weights.preprocess import imagenet

onnx = pytest.importorskip("onnx")  # the [transfer] extra, with onnxruntime
pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("head,size", [("gap", 32), ("fc", 32), ("conv", 224)])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_for_any_batch(tmp_path, fmt, head, size):
    model = build_model("A", num_classes=5, width=0.125, head=head, batch_norm=True, seed=0).eval()
    model.metadata = {"preprocessing": {**imagenet(), "image_size": size}, "classes": list("abcde")}
    path = export(model, tmp_path / f"m.{fmt}", fmt)
    g = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        assert max_difference(model, path, fmt, torch.randn(batch, 3, size, size, generator=g)) < 1e-4
    if head != "fc" and fmt == "onnx":  # fully convolutional: any image size >= the minimum
        assert max_difference(model, path, fmt, torch.randn(2, 3, size + 32, size + 64, generator=g)) < 1e-4


def test_onnx_carries_opset_dynamic_batch_and_metadata(tmp_path):
    model = build_model("A", num_classes=5, width=0.125, head="gap", seed=0).eval()
    model.metadata = {"preprocessing": {**imagenet(), "image_size": 32}, "classes": list("abcde")}
    proto = onnx.load(str(export(model, tmp_path / "m.onnx", "onnx")))
    assert proto.opset_import[0].version >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["vggnet.classes"]) == list("abcde")
    assert json.loads(props["vggnet.preprocessing"])["stats"]["mean"] == imagenet()["stats"]["mean"]


def test_fc_head_at_a_size_onnx_cannot_pool_is_a_clear_error(tmp_path):
    model = build_model("A", num_classes=5, width=0.125, head="fc", seed=0)
    with pytest.raises(ConfigError, match="--image-size 32 or a multiple of 224"):
        export(model, tmp_path / "m.onnx", "onnx", image_size=64)
    with pytest.raises(ConfigError, match="valid: onnx, torchscript"):
        export(model, tmp_path / "m.x", "tflite")


def test_export_command(tmp_path, capsys):
    model = build_model("A", num_classes=4, width=0.125, head="gap", seed=0)
    model.metadata = {"preprocessing": {**imagenet(), "image_size": 32}}
    save_as(model, tmp_path / "w.safetensors")
    assert main(["export", str(tmp_path / "w.safetensors"), "--format", "onnx", "--out", str(tmp_path / "w.onnx")]) == 0
    assert "max |onnx - PyTorch|" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "w.safetensors"), "--format", "keras", "--out", str(tmp_path / "w.h5")]) == 2
    model_fc = build_model("A", num_classes=4, width=0.125, head="fc", seed=0)
    save_as(model_fc, tmp_path / "fc.safetensors")
    timm_file = str(tmp_path / "t.safetensors")
    assert main(["export", str(tmp_path / "fc.safetensors"), "--format", "timm", "--out", timm_file]) == 0
    assert torch.equal(load_pretrained(tmp_path / "t.safetensors").features[0].weight, model_fc.features[0].weight)
