"""Appendix B descriptors, saving them, and the linear probe (on a briefly trained Fashion-MNIST net)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from vggnet.cli import main
from vggnet.errors import ConfigError
from vggnet.model.vgg import build_model
from vggnet.transfer.features import Describer, describe, linear_probe, save_features
from vggnet.weights.formats import save_as
from vggnet.weights.preprocess import imagenet

pytest.importorskip("sklearn")  # the [transfer] extra

PRE = {**imagenet(), "image_size": 32}


def _images(n=4, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_descriptors_are_l2_normalised_and_flip_invariant():
    model = build_model("A", num_classes=10, width=0.125, head="fc", seed=0)
    describer = Describer(model, PRE, layer="penultimate")
    x = _images()
    d = describer(x)
    assert d.shape == (4, model.hidden)
    assert torch.allclose(d.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(describer(x.flip(-1)), d, atol=1e-5)  # averaged with the flipped image
    assert not torch.allclose(Describer(model, PRE, flip=False)(x.flip(-1)), d, atol=1e-3)


def test_conv_layer_is_the_pooled_last_conv_map():
    model = build_model("A", num_classes=10, width=0.125, head="fc", seed=0).eval()
    x = _images()
    d = Describer(model, PRE, layer="conv", flip=False)(x)
    from vggnet.weights.preprocess import prepare

    with torch.no_grad():
        expected = torch.nn.functional.normalize(model.forward_features(prepare(x, PRE)).mean((2, 3)), dim=1)
    assert d.shape == (4, model.num_features) and torch.allclose(d, expected, atol=1e-5)


def test_dense_at_224_equals_the_fc_head_and_scales_average():
    model = build_model("A", num_classes=10, width=0.125, head="fc", seed=0).eval()
    x = _images(2, 224)
    from vggnet.weights.preprocess import prepare

    with torch.no_grad():
        fc = model.forward_head(model.forward_features(prepare(x, PRE)), pre_logits=True)
    dense = Describer(model, PRE, flip=False)(x)  # the conv-head path at 224
    assert torch.allclose(dense, torch.nn.functional.normalize(fc, dim=1), atol=1e-5)
    multi = Describer(model, PRE, flip=False, scales=[224, 256])(x)
    assert multi.shape == dense.shape and not torch.allclose(multi, dense, atol=1e-4)
    with pytest.raises(ConfigError, match="minimum input"):
        Describer(model, PRE, scales=[16])


def test_file_sets_of_varying_sizes_are_described_one_by_one():
    model = build_model("A", num_classes=10, width=0.125, head="gap", seed=0)
    batches = [([_images(1, 40)[0], _images(1, 48, seed=1)[0]], torch.tensor([0, 1]))]
    feats, labels = describe(model, batches, PRE)
    assert feats.shape == (2, model.num_features) and labels.tolist() == [0, 1]


def test_save_npy_and_safetensors(tmp_path):
    arrays = {"train.features": torch.rand(5, 8), "train.labels": torch.arange(5)}
    written = save_features(tmp_path / "f.npy", arrays, {"layer": "conv"})
    assert sorted(p.name for p in written) == ["f.json", "f.train.npy", "f.train_labels.npy"]
    assert np.allclose(np.load(tmp_path / "f.train.npy"), arrays["train.features"].numpy())
    assert np.load(tmp_path / "f.train_labels.npy").tolist() == list(range(5))
    save_features(tmp_path / "f.safetensors", arrays, {"layer": "conv"})
    with safe_open(str(tmp_path / "f.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["vggnet"])["layer"] == "conv"
        assert torch.equal(f.get_tensor("train.labels"), arrays["train.labels"])
    with pytest.raises(ConfigError, match="must end in"):
        save_features(tmp_path / "f.csv", arrays, {})


def _train_fashion_mnist(steps=80):
    """A tiny net, briefly trained on 2000 Fashion-MNIST images with plain SGD."""
    from vggnet.data import augment, sources
    from vggnet.config import DataConfig

    ds = sources.get(DataConfig(name="fashion-mnist", subset=2000, download=False), seed=0)
    stats = augment.compute_stats(ds.train)
    x = augment.normalize(augment.centre_pad(ds.train.images, 32), stats, "standardize")
    y = ds.train.labels
    torch.manual_seed(0)
    model = build_model("A", num_classes=10, width=0.125, batch_norm=True, head="gap", in_channels=1, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(y), (64,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    pre = {"dataset": "fashion-mnist", "channels": 1, "image_size": 32, "scale": None, "test_scale": None,
           "normalize": "standardize", "stats": stats.to_dict()}
    model.metadata = {"preprocessing": pre, "classes": ds.classes}
    return model.eval()


def test_linear_probe_on_a_trained_fashion_mnist_net_is_far_above_chance():
    from vggnet.data import sources
    from vggnet.config import DataConfig

    model = _train_fashion_mnist()
    ds = sources.get(DataConfig(name="fashion-mnist", subset=2000, download=False), seed=0)
    pre = model.metadata["preprocessing"]

    def batches(split, n):
        return ((split.images[i : i + 500], split.labels[i : i + 500]) for i in range(0, n, 500))

    train = describe(model, batches(ds.train, 2000), pre, layer="conv")
    test = describe(model, batches(ds.test, 2000), pre, layer="conv")
    result = linear_probe(*train, *test, kind="svm")
    assert result["n_train"] == 2000 and result["n_test"] == 2000
    assert result["chance"] < 0.15
    assert result["test_accuracy"] > 0.75  # chance is ~10%; measured ~0.82


def test_features_command_saves_and_probes(tmp_path, capsys):
    model = build_model("A", num_classes=3, width=0.125, head="gap", seed=0)
    save_as(model, tmp_path / "w.safetensors")
    synthetic = ["--data", "synthetic", "--set", "data.num_classes=3", "--set", "data.num_train=120",
                 "--set", "data.num_test=60"]
    code = main(["features", "--weights", str(tmp_path / "w.safetensors"), *synthetic,
                 "--out", str(tmp_path / "f.safetensors"), "--linear-probe", "logreg"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_train"] == 108 and result["n_test"] == 60  # 10% of train carved for val
    with safe_open(str(tmp_path / "f.safetensors"), "pt") as f:
        assert f.get_tensor("train.features").shape == (108, model.num_features)
        assert json.loads(f.metadata()["vggnet"])["linear_probe"]["probe"] == "logreg"
    assert main(["features", "--weights", str(tmp_path / "w.safetensors"), *synthetic, "--split", "train",
                 "--out", str(tmp_path / "f.npy"), "--linear-probe", "svm"]) == 2


def test_linear_probe_svm_and_bad_kind():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    y = torch.arange(90) % 3
    x = centres[y] + torch.randn(90, 16, generator=g)
    result = linear_probe(x[:60], y[:60], x[60:], y[60:], kind="svm")
    assert result["test_accuracy"] > 0.9 and result["dim"] == 16
    with pytest.raises(ConfigError, match="valid: svm, logreg"):
        linear_probe(x, y, x, y, kind="knn")


def test_features_command_takes_a_layer_name(tmp_path, capsys):
    save_as(build_model("A", num_classes=3, width=0.125, head="gap", seed=0), tmp_path / "w.safetensors")
    synthetic = ["--data", "synthetic", "--set", "data.num_classes=3", "--set", "data.num_train=20",
                 "--set", "data.num_test=10", "--split", "test"]
    assert main(["features", "--weights", str(tmp_path / "w.safetensors"), *synthetic, "--layer", "relu4_2",
                 "--out", str(tmp_path / "f.safetensors")]) == 0
    assert "10 images -> 64-D descriptors" in capsys.readouterr().out
    assert main(["features", "--weights", str(tmp_path / "w.safetensors"), *synthetic, "--layer", "relu5_3",
                 "--out", str(tmp_path / "f.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown feature layer 'relu5_3'" in err and "relu5_2" in err
    assert main(["features", "--weights", str(tmp_path / "w.safetensors"), *synthetic, "--layer", "relu9_9",
                 "--out", str(tmp_path / "f.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vggnet features: error: unknown feature layer 'relu9_9'; valid: "
                                                    "penultimate, conv or a layer name: conv1_1, relu1_1, pool1,")
