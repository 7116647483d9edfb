"""Keras 3 files (.weights.h5 and .keras), written here with h5py in exactly Keras 3's layout."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from vggnet.cli import main
from vggnet.errors import WeightsError
from vggnet.model.vgg import build_model
from vggnet.weights import preprocess
from vggnet.weights.formats import load_pretrained, save_as

h5py = pytest.importorskip("h5py")

KERAS_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def keras3_file(model, path, *, top=True):
    """What Keras 3.15's ``model.save_weights()`` writes for keras.applications.VGG16/19, written
    independently of vggnet: ``layers/<class name>[_<n>]/vars/{0: kernel, 1: bias}`` with the
    class-named layers numbered per class in model order, each ``vars`` group carrying the
    layer's own name as an attribute; kernels (kh, kw, in, out); dense kernels (in, out), fc1's
    rows in the NHWC flatten order (h, w, c)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    counts: dict[str, int] = {}

    def group(f, cls, name, arrays=()):
        n = counts.get(cls, -1) + 1
        counts[cls] = n
        g = f.create_group(f"layers/{cls}{f'_{n}' if n else ''}/vars")
        g.attrs["name"] = name
        for i, a in enumerate(arrays):
            g[str(i)] = np.ascontiguousarray(a)

    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "vgg16"
        group(f, "input_layer", "input_layer")
        block, conv = 1, 0
        for i, layer in enumerate(model.features):
            if isinstance(layer, torch.nn.Conv2d):
                conv += 1
                group(f, "conv2d", f"block{block}_conv{conv}",
                      (sd[f"features.{i}.weight"].transpose(2, 3, 1, 0), sd[f"features.{i}.bias"]))
            elif isinstance(layer, torch.nn.MaxPool2d):
                group(f, "max_pooling2d", f"block{block}_pool")
                block, conv = block + 1, 0
        if top:
            c, hidden = model.num_features, model.hidden
            group(f, "flatten", "flatten")
            w1 = sd["classifier.0.weight"].reshape(hidden, c, 7, 7).transpose(2, 3, 1, 0).reshape(-1, hidden)
            group(f, "dense", "fc1", (w1, sd["classifier.0.bias"]))
            group(f, "dense", "fc2", (sd["classifier.3.weight"].T, sd["classifier.3.bias"]))
            group(f, "dense", "predictions", (sd["classifier.6.weight"].T, sd["classifier.6.bias"]))


def keras_logits(model, rgb_uint8):
    """Keras' forward on keras.applications.vgg16.preprocess_input(x): BGR, 0-255, mean subtracted."""
    with torch.no_grad():
        return model(rgb_uint8.float().flip(1) - KERAS_MEAN_BGR)


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("letter", ["D", "E"])  # VGG16, VGG19
def test_keras3_weights_file_gives_keras_logits(tmp_path, images, letter):
    source = build_model(letter, num_classes=6, width=0.125, seed=4).eval()
    keras3_file(source, tmp_path / "vgg.weights.h5")
    with h5py.File(tmp_path / "vgg.weights.h5") as f:
        assert list(f["layers"])[:3] == ["conv2d", "conv2d_1", "conv2d_10"]  # HDF5's order is not the model's
    model = load_pretrained(tmp_path / "vgg.weights.h5").eval()
    assert model.config["name"] == letter and model.config["num_classes"] == 6
    assert model.metadata["source"] == "keras3:vgg.weights.h5"
    with torch.no_grad():
        got = model(preprocess.prepare(images, model.metadata["preprocessing"]))
    assert (got - keras_logits(source, images)).abs().max() < 1e-4


def test_keras3_notop_and_a_plain_h5_name_are_read(tmp_path):
    source = build_model("D", num_classes=6, width=0.125, seed=4)
    keras3_file(source, tmp_path / "notop.h5", top=False)  # the layout is found from the content
    with pytest.warns(UserWarning, match=r"notop.h5 is named like a keras file but holds Keras 3's .*rename it "
                                         r"NAME\.weights\.h5"):
        model = load_pretrained(tmp_path / "notop.h5")
    assert "partial" in model.metadata
    assert torch.equal(model.features[-3].weight, source.features[-3].weight)


@pytest.mark.parametrize("letter,top", [("E", True), ("D", False)])  # VGG19 with top, VGG16 notop
def test_keras_archive_is_read(tmp_path, images, letter, top):
    source = build_model(letter, num_classes=3, width=0.125, seed=5).eval()
    keras3_file(source, tmp_path / "model.weights.h5", top=top)
    name = {"D": "vgg16", "E": "vgg19"}[letter]
    with zipfile.ZipFile(tmp_path / f"{name}.keras", "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"name": name}}))
        archive.write(tmp_path / "model.weights.h5", "model.weights.h5")
    model = load_pretrained(tmp_path / f"{name}.keras").eval()
    assert model.config["name"] == letter and ("partial" in model.metadata) != top
    x = preprocess.prepare(images, model.metadata["preprocessing"])
    with torch.no_grad():
        if top:
            assert (model(x) - keras_logits(source, images)).abs().max() < 1e-4
        else:  # notop: the conv stack is Keras' (maps up to ~200: a relative bound)
            keras_features = source.forward_features(images.float().flip(1) - KERAS_MEAN_BGR)
            assert (model.forward_features(x) - keras_features).abs().max() < 1e-5 * keras_features.abs().max()


def test_keras3_write_is_what_keras3_loads(tmp_path):
    model = build_model("D", num_classes=1000, width=0.125, seed=6)
    save_as(model, tmp_path / "out.weights.h5", "keras3")
    reference = tmp_path / "ref.weights.h5"
    keras3_file(model, reference)
    with h5py.File(tmp_path / "out.weights.h5") as got, h5py.File(reference) as want:
        def entries(f):
            out = {}
            f.visititems(lambda name, obj: out.__setitem__(name, (getattr(obj, "shape", None), dict(obj.attrs))))
            return out
        assert entries(got) == entries(want)
        assert np.array_equal(got["layers/conv2d_10/vars/0"][()], want["layers/conv2d_10/vars/0"][()])
        assert np.array_equal(got["layers/dense/vars/0"][()], want["layers/dense/vars/0"][()])
    loaded = load_pretrained(tmp_path / "out.weights.h5")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_keras3_file_of_another_architecture_is_refused(tmp_path):
    with h5py.File(tmp_path / "resnet.weights.h5", "w") as f:
        f.create_group("vars")
        f["layers/conv2d/vars/0"] = np.zeros((7, 7, 3, 64), np.float32)
        f["layers/conv2d/vars/1"] = np.zeros(64, np.float32)
        for i in range(4):
            f[f"layers/batch_normalization/vars/{i}"] = np.zeros(64, np.float32)
    with pytest.raises(WeightsError, match="keras3 file .*not a Keras VGG.*batch_normalization"):
        load_pretrained(tmp_path / "resnet.weights.h5")
    with h5py.File(tmp_path / "mlp.weights.h5", "w") as f:
        f["layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 64), np.float32)
        f["layers/conv2d/vars/1"] = np.zeros(64, np.float32)
    with pytest.raises(WeightsError, match="match no VGG config"):
        load_pretrained(tmp_path / "mlp.weights.h5")
    keras3_file(build_model("D", width=0.125, seed=0), tmp_path / "full.weights.h5")
    (tmp_path / "cut.weights.h5").write_bytes((tmp_path / "full.weights.h5").read_bytes()[:5000])
    with zipfile.ZipFile(tmp_path / "cut.keras", "w") as archive:
        archive.writestr("model.weights.h5", (tmp_path / "full.weights.h5").read_bytes()[:5000])
    for name in ("cut.weights.h5", "cut.keras"):
        with pytest.raises(WeightsError, match="keras3 file .* truncated"):
            load_pretrained(tmp_path / name)


def resnet_keras3_file(path):
    """A ResNet-50 stem and first bottleneck block (reduced) as Keras 3 saves it: every layer a
    group, numbered per class, the weightless ones with an empty ``vars``."""
    counts: dict[str, int] = {}
    with h5py.File(path, "w") as f:
        f.create_group("vars").attrs["name"] = "resnet50"

        def group(cls, *shapes):
            n = counts.get(cls, -1) + 1
            counts[cls] = n
            g = f.create_group(f"layers/{cls}{f'_{n}' if n else ''}/vars")
            for i, shape in enumerate(shapes):
                g[str(i)] = np.zeros(shape, np.float32)

        for cls in ("input_layer", "zero_padding2d"):
            group(cls)
        group("conv2d", (7, 7, 3, 64), (64,))
        group("batch_normalization", *[(64,)] * 4)
        for cls in ("activation", "zero_padding2d", "max_pooling2d"):
            group(cls)
        for k, (inp, out) in enumerate([(64, 64), (64, 64), (64, 256)]):
            group("conv2d", (3 if k == 1 else 1,) * 2 + (inp, out), (out,))
            group("batch_normalization", *[(out,)] * 4)
            group("activation")
        group("add")
        group("global_average_pooling2d")
        group("dense", (256, 1000), (1000,))


def test_keras_files_of_another_architecture_are_one_line_exit_2(tmp_path, capsys):
    resnet_keras3_file(tmp_path / "resnet50.weights.h5")
    with zipfile.ZipFile(tmp_path / "resnet50.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {"name": "resnet50"}}))
        archive.write(tmp_path / "resnet50.weights.h5", "model.weights.h5")
    conv = lambda *kernel: {"kernel:0": kernel, "bias:0": kernel[-1:]}  # noqa: E731
    bn = {f"{v}:0": (64,) for v in ("gamma", "beta", "moving_mean", "moving_variance")}
    with h5py.File(tmp_path / "resnet50.h5", "w") as f:  # Keras 2's layout of the same net
        for name, variables in (("conv1_conv", conv(7, 7, 3, 64)), ("conv1_bn", bn),
                                ("conv2_block1_1_conv", conv(1, 1, 64, 64)), ("predictions", conv(2048, 1000))):
            for var, shape in variables.items():
                f[f"{name}/{name}/{var}"] = np.zeros(shape, np.float32)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "a.png")
    expected = {"resnet50.weights.h5": "keras3 file .*resnet50.weights.h5 is not a Keras VGG: expected conv2d ... and "
                                       "0 or 3 dense layers, found 4 conv2d, 1 dense and batch_normalization",
                "resnet50.keras": r"keras3 file .*resnet50.keras \(model 'resnet50'\) is not a Keras VGG",
                "resnet50.h5": r"keras \(legacy .h5\) file .*resnet50.h5 has no block\{n\}_conv\{m\} layers \(found: "
                               r"conv1_conv, conv2_block1_1_conv, predictions\); not a Keras VGG file"}
    for name, pattern in expected.items():
        assert main(["predict", str(tmp_path / name), str(tmp_path / "a.png")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.match(f"vggnet predict: error: {pattern}", err), err


def test_export_picks_the_layout_from_the_name_and_warns_on_a_mismatch(tmp_path, capsys):
    model = build_model("D", num_classes=4, width=0.125, seed=0)
    save_as(model, tmp_path / "w.safetensors")
    assert main(["export", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "a.weights.h5")]) == 0
    out = capsys.readouterr()
    assert "Keras 3: keras.applications.VGG16(weights=None, classes=4).load_weights" in out.out
    assert "warning" not in out.err
    with h5py.File(tmp_path / "a.weights.h5") as f:
        assert "layers/conv2d_12/vars/0" in f
    assert main(["export", str(tmp_path / "w.safetensors"), "--format", "keras",
                 "--out", str(tmp_path / "b.weights.h5")]) == 0
    assert "warning: b.weights.h5 is named like a keras3 file" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "c.keras")]) == 2
    assert "does not write them; formats that can take this VGG-D" in capsys.readouterr().err


@pytest.mark.slow  # real Keras 3 (torch backend), full-size VGG16/VGG19: only where keras is installed
def test_against_real_keras3(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras is set up with another backend")
    x = np.random.default_rng(0).normal(0, 50, (1, 224, 224, 3)).astype(np.float32)  # NHWC
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    ours = build_model("D", num_classes=1000, seed=0).eval()
    save_as(ours, tmp_path / "d.weights.h5", "keras3")
    theirs = keras.applications.VGG16(weights=None, classifier_activation=None)
    theirs.load_weights(str(tmp_path / "d.weights.h5"))
    with torch.no_grad():
        assert np.abs(np.asarray(theirs(x, training=False).detach()) - ours(xt).numpy()).max() < 1e-4
    k19 = keras.applications.VGG19(weights=None, classes=7, classifier_activation=None)
    k19.save_weights(str(tmp_path / "e.weights.h5"))
    k19.save(str(tmp_path / "e.keras"))
    expected = np.asarray(k19(x, training=False).detach())
    for name in ("e.weights.h5", "e.keras"):
        with torch.no_grad():
            got = load_pretrained(tmp_path / name).eval()(xt).numpy()
        assert np.abs(got - expected).max() < 1e-4, name
