"""Weights in and out: Keras (HDF5 written here with h5py), timm, torchvision, ours; downloads; safety."""

from __future__ import annotations

import os
import urllib.error

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vggnet.errors import WeightsError
from vggnet.model.vgg import build_model
from vggnet.weights import formats, preprocess
from vggnet.weights.formats import load_pretrained, save_as

h5py = pytest.importorskip("h5py")  # the [transfer] extra

KERAS_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def keras_file(model, path, *, top=True):
    """keras.applications' layout, written independently of vggnet's writer: block{n}_conv{m}
    kernels (kh, kw, in, out); fc1 rows in the NHWC flatten order of the 7x7 map."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    with h5py.File(path, "w") as f:
        block, conv = 1, 0
        for i, layer in enumerate(model.features):
            if isinstance(layer, torch.nn.MaxPool2d):
                block, conv = block + 1, 0
            elif isinstance(layer, torch.nn.Conv2d):
                conv += 1
                name = f"block{block}_conv{conv}"
                g = f.create_group(name).create_group(name)
                g["kernel:0"] = sd[f"features.{i}.weight"].numpy().transpose(2, 3, 1, 0)
                g["bias:0"] = sd[f"features.{i}.bias"].numpy()
        if top:
            c, hidden = model.num_features, model.hidden
            w1 = sd["classifier.0.weight"].numpy().reshape(hidden, c, 7, 7).transpose(2, 3, 1, 0).reshape(-1, hidden)
            for name, w, b in (("fc1", w1, sd["classifier.0.bias"]), ("fc2", sd["classifier.3.weight"].numpy().T,
                                                                       sd["classifier.3.bias"]),
                               ("predictions", sd["classifier.6.weight"].numpy().T, sd["classifier.6.bias"])):
                g = f.create_group(name).create_group(name)
                g["kernel:0"], g["bias:0"] = np.ascontiguousarray(w), b.numpy()


def keras_preprocess_input(images_rgb_uint8):
    """keras.applications.vgg16.preprocess_input (caffe mode), written out."""
    return images_rgb_uint8.float().flip(1) - KERAS_MEAN_BGR


@pytest.fixture(scope="module")
def keras_model():
    # A Keras net: it expects BGR, 0-255, mean-subtracted input.
    return build_model("D", num_classes=5, width=0.125, seed=1).eval()


@pytest.fixture(scope="module")
def rgb_images():
    return torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_keras_file_gives_the_keras_outputs_with_its_bgr_preprocessing(tmp_path, keras_model, rgb_images):
    keras_file(keras_model, tmp_path / "vgg16.h5")
    with torch.no_grad():
        expected = keras_model(keras_preprocess_input(rgb_images))
    model = load_pretrained(tmp_path / "vgg16.h5").eval()
    pre = model.metadata["preprocessing"]
    assert pre["channel_order"] == "BGR" and pre["pixel_scale"] == 255 and pre["normalize"] == "mean"
    assert model.config["name"] == "D" and model.config["num_classes"] == 5
    with torch.no_grad():
        got = model(preprocess.prepare(rgb_images, pre))
        wrong_order = model(preprocess.prepare(rgb_images, {**pre, "channel_order": "RGB"}))
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    assert (wrong_order - expected).abs().max() > 1e-2  # the BGR handling matters
    # Folded into the weights, plain RGB mean/std pipelines feed it correctly too.
    preprocess.canonical(model)
    folded = model.metadata["preprocessing"]
    assert "channel_order" not in folded and "pixel_scale" not in folded
    with torch.no_grad():
        assert torch.allclose(model(preprocess.prepare(rgb_images, folded)), expected, atol=1e-4, rtol=0)


def test_keras2_layout_named_weights_h5_is_read_as_keras2_with_a_warning(tmp_path, keras_model):
    keras_file(keras_model, tmp_path / "vgg16.weights.h5")  # tf.keras 2 saved any name in its own layout
    with pytest.warns(UserWarning, match=r"vgg16.weights.h5 is named like a keras3 file but holds Keras 2's "):
        model = load_pretrained(tmp_path / "vgg16.weights.h5")
    assert model.metadata["source"] == "keras:vgg16.weights.h5"
    assert torch.equal(model.classifier[6].weight, keras_model.classifier[6].weight)
    (tmp_path / "cut.h5").write_bytes((tmp_path / "vgg16.weights.h5").read_bytes()[:3000])
    with pytest.raises(WeightsError, match=r"^keras file .*cut.h5 is not a readable HDF5 file .*; it is truncated"):
        load_pretrained(tmp_path / "cut.h5")


def test_keras_notop_file_loads_the_features(tmp_path, keras_model):
    keras_file(keras_model, tmp_path / "notop.h5", top=False)
    model = load_pretrained(tmp_path / "notop.h5")
    assert "partial" in model.metadata
    assert torch.equal(model.features[0].weight, keras_model.features[0].weight)


@pytest.mark.parametrize("fmt,name,batch_norm", [
    ("vggnet", "w.safetensors", False), ("vggnet", "w.safetensors", True), ("timm", "w.safetensors", False),
    ("timm", "w.safetensors", True), ("torchvision", "w.pth", False), ("torchvision", "w.pth", True),
    ("keras", "w.h5", False),  # Keras VGGs have no batch norm
])
def test_round_trip_in_every_format(tmp_path, fmt, name, batch_norm):
    model = build_model("A", num_classes=3, width=0.125, batch_norm=batch_norm, seed=2)
    if batch_norm:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
    loaded = load_pretrained(save_as(model, tmp_path / name, fmt))
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert "preprocessing" in loaded.metadata or fmt == "vggnet"


@pytest.mark.parametrize("fmt,name", [("torchvision", "w.pth"), ("timm", "w.safetensors"), ("keras", "w.h5"),
                                      ("keras3", "w.weights.h5")])
def test_foreign_exports_keep_the_preprocessing_so_the_reloaded_model_scores_the_same(tmp_path, fmt, name):
    """A net trained on Fashion-MNIST (1 channel upscaled, its own stats, its class names) exported
    to a tensors-only format: the sidecar brings its preprocessing back, and the reloaded model gives
    the same logits on the same raw images as the original (without it: ImageNet's, and different)."""
    from vggnet.eval.preprocess import Preprocessing
    from vggnet.weights.formats import sidecar

    model = build_model("A", num_classes=3, width=0.125, seed=2, head="fc").eval()
    model.metadata = {"preprocessing": {"dataset": "fashion-mnist", "channels": 3, "image_size": 224, "scale": [256],
                                        "test_scale": 256, "normalize": "paper",
                                        "stats": {"mean": [0.29, 0.29, 0.29], "std": [0.35, 0.35, 0.35]}},
                      "classes": ["shirt", "bag", "boot"]}
    raw = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    path = save_as(model, tmp_path / name, fmt)
    assert sidecar(path).is_file()
    loaded = load_pretrained(path).eval()
    assert loaded.metadata["classes"] == ["shirt", "bag", "boot"]
    assert loaded.metadata["preprocessing"]["normalize"] == "paper"
    before = Preprocessing.from_metadata({**model.metadata, "model": model.config})
    after = Preprocessing.from_metadata(loaded.metadata)
    with torch.no_grad():
        assert torch.allclose(model(before.finish(raw)), loaded(after.finish(raw)), atol=1e-4)
    sidecar(path).unlink()
    assert load_pretrained(path).metadata["preprocessing"]["normalize"] != "paper"


def test_keras_refuses_what_keras_cannot_hold(tmp_path):
    with pytest.raises(WeightsError, match="no batch norm"):
        save_as(build_model("A", width=0.125, batch_norm=True), tmp_path / "bn.h5", "keras")


def test_keras_write_is_keras_layout(tmp_path, keras_model):
    save_as(keras_model, tmp_path / "k.h5", "keras")
    with h5py.File(tmp_path / "k.h5") as f:
        assert f["block5_conv3/block5_conv3/kernel:0"].shape == (3, 3, 64, 64)
        assert f["fc1/fc1/kernel:0"].shape == (64 * 49, 512)
        assert b"block1_pool" in list(f.attrs["layer_names"])


def test_timm_layout_both_ways(tmp_path):
    model = build_model("B", num_classes=4, width=0.125, seed=3).eval()
    state = formats.to_timm(model)
    assert state["pre_logits.fc1.weight"].shape == (512, 64, 7, 7)
    assert state["pre_logits.fc2.weight"].shape == (512, 512, 1, 1)
    assert state["head.fc.weight"].shape == (4, 512)
    assert not any(k.startswith("classifier") for k in state)
    save_file(state, tmp_path / "timm.safetensors")
    loaded = load_pretrained(tmp_path / "timm.safetensors", head="conv").eval()
    assert loaded.config["name"] == "B" and loaded.head == "conv"
    assert loaded.metadata["preprocessing"]["stats"]["mean"] == preprocess.IMAGENET_MEAN
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


def test_run_directory_is_a_spec(tmp_path):
    model = build_model("A", num_classes=3, width=0.125, head="gap", seed=0)
    save_as(model, tmp_path / "model.safetensors")
    assert load_pretrained(tmp_path).config == model.config


def test_torchvision_published_name_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*_a, **_k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsError, match=r"cannot download torchvision:vgg16 .*vgg16-397923af\.pth.*file path"):
        load_pretrained("torchvision:vgg16")


def test_torchvision_published_name_hash_checked_download_and_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    calls = []
    source = build_model("A", num_classes=1000, width=0.125, seed=0)

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, hash_prefix))
        torch.save(source.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = load_pretrained("torchvision:vgg11")
    load_pretrained("torchvision:vgg11")  # second time from the cache
    assert calls == [("https://download.pytorch.org/models/vgg11-8a719046.pth", "8a719046")]
    assert model.metadata["preprocessing"]["stats"]["std"] == preprocess.IMAGENET_STD
    assert len(model.metadata["classes"]) == 1000 and model.metadata["classes"][0] == "tench"
    assert torch.equal(model.features[0].weight, source.features[0].weight)


def test_unknown_specs_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="published: vgg11"):
        load_pretrained("torchvision:vgg17")
    with pytest.raises(WeightsError, match="not found"):
        load_pretrained(tmp_path / "missing.pth")
    save_file({"layer.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="neither"):
        load_pretrained(tmp_path / "other.safetensors")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": torch.zeros(1), "payload": _Exploit(marker)}, path)
    with pytest.raises(WeightsError, match="refused"):
        load_pretrained(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notice
def test_a_file_of_no_known_format_says_what_it_is_and_what_is_accepted(tmp_path, capsys):
    (tmp_path / "notes.bin").write_bytes(b"hello world " * 10)
    with pytest.raises(WeightsError, match=r"detected: unknown content.*accepted: .*Keras 3 .weights.h5 .*\.caffemodel"):
        load_pretrained(tmp_path / "notes.bin")
    save_as(build_model("A", num_classes=3, width=0.125, seed=0), tmp_path / "w.pth", "torchvision")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "w.pth").read_bytes()[:4000])
    with pytest.raises(WeightsError, match="detected: truncated-zip content"):
        load_pretrained(tmp_path / "cut.pth")
    traced = torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    traced.save(str(tmp_path / "model.pt"))
    with pytest.raises(WeightsError, match="detected: torchscript content"):
        load_pretrained(tmp_path / "model.pt")
    from vggnet.cli import main

    (tmp_path / "a.png").write_bytes(b"")  # never read: the weights are refused first
    for name, kind in (("notes.bin", "unknown"), ("cut.pth", "truncated-zip"), ("model.pt", "torchscript")):
        assert main(["predict", str(tmp_path / name), str(tmp_path / "a.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"(detected: {kind} content" in err and "; accepted: a run directory" in err


def test_export_errors_say_what_a_format_holds_and_which_formats_can(tmp_path):
    model = build_model("A", num_classes=3, width=0.125, head="gap", seed=0)
    for fmt in ("torchvision", "timm", "keras", "keras3"):
        with pytest.raises(WeightsError, match=rf"^{fmt} cannot hold this VGG-A \(gap head, 3 classes, width 0.125\): "
                                               rf"{fmt} holds .*fc head.*; formats that can: vggnet, onnx, "
                                               "torchscript$"):
            save_as(model, tmp_path / "x", fmt)
    with pytest.raises(WeightsError, match="^timm cannot hold"):  # not torchvision's message
        formats.to_timm(model)
    bn = build_model("D", num_classes=3, width=0.125, batch_norm=True, seed=0)
    with pytest.raises(WeightsError, match="formats that can: vggnet, torchvision, timm, onnx, torchscript$"):
        save_as(bn, tmp_path / "x.weights.h5", "keras3")
    lrn = build_model("A-LRN", num_classes=3, width=0.125, seed=0)
    with pytest.raises(WeightsError, match="^torchvision cannot hold.*formats that can: vggnet, onnx, torchscript$"):
        save_as(lrn, tmp_path / "x.pth", "torchvision")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit's deprecation notice
def test_export_command_agrees_on_what_each_format_holds(tmp_path, capsys):
    """One message per format, from the command line too: a gap-head model refused by every
    format with the fc head, each naming the same formats that can take it, and those work."""
    from vggnet.cli import main
    from vggnet.weights.layout import HOLDS

    save_as(build_model("A", num_classes=3, width=0.125, head="gap", seed=0), tmp_path / "gap.safetensors")
    gap = str(tmp_path / "gap.safetensors")
    for out, fmt in (("g.h5", "keras"), ("g.weights.h5", "keras3"), ("g.pth", "torchvision"),
                     ("g.safetensors", "timm")):
        assert main(["export", gap, "--format", fmt, "--out", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err == (f"vggnet export: error: {fmt} cannot hold this VGG-A (gap head, 3 classes, width 0.125): "
                       f"{fmt} holds {HOLDS[fmt]}; formats that can: vggnet, onnx, torchscript\n")
        assert not (tmp_path / out).exists()
    assert main(["export", gap, "--out", str(tmp_path / "g.keras")]) == 2  # read, not written: the same list
    assert capsys.readouterr().err.endswith("formats that can take this VGG-A (gap head, 3 classes, width 0.125): "
                                            "vggnet, onnx, torchscript\n")
    for out in ("g2.safetensors", "g.onnx"):
        assert main(["export", gap, "--out", str(tmp_path / out)]) == 0
    save_as(build_model("D", num_classes=3, width=0.125, seed=0), tmp_path / "d.safetensors")
    assert main(["export", str(tmp_path / "d.safetensors"), "--out", str(tmp_path / "d.keras")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vggnet, torchvision, timm, keras, keras3, onnx, torchscript; Keras 3 loads " \
        "a .weights.h5 with load_weights: give --out NAME.weights.h5" in err
    assert main(["export", str(tmp_path / "d.safetensors"), "--out", str(tmp_path / "d.pth")]) == 0
    assert "at width 0.125 and that constructor builds width 1" in capsys.readouterr().out


def test_a_features_only_model_is_held_by_vggnet_alone(tmp_path):
    from vggnet.transfer.export import export

    model = build_model("D", width=0.125, features_only=True, seed=0)
    for fmt in ("torchvision", "keras3"):
        with pytest.raises(WeightsError, match=r"cannot hold this VGG-D \(features only, width 0.125\).*can: vggnet$"):
            save_as(model, tmp_path / "x", fmt)
    for fmt in ("onnx", "torchscript"):
        with pytest.raises(WeightsError, match=rf"^{fmt} cannot hold .*not a features_only model\); formats that "
                                               "can: vggnet$"):
            export(model, tmp_path / "x", fmt)
    assert load_pretrained(save_as(model, tmp_path / "f.safetensors")).config == model.config
