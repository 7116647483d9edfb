"""Each format read from small files in its original layout; val carving; bad-input messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from data_layouts import cfg, make_caltech, make_cifar10, make_cifar100, make_idx_dir, make_imagefolder
from vggnet.data import formats, sources
from vggnet.errors import ConfigError, DataError

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_idx_gz_from_data_dir(tmp_path: Path, no_system_data: None, name: str) -> None:
    make_idx_dir(tmp_path / name)
    ds = sources.get(cfg(name=name, dir=str(tmp_path), val_fraction=0.2))
    assert ds.in_memory and ds.channels == 1 and len(ds.classes) == 10
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape[1:] == (1, 28, 28)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 20)
    assert torch.bincount(ds.val.labels).tolist() == [1] * 10  # stratified: 20% of 5 per class


def test_idx_found_through_env_var(tmp_path: Path, no_system_data: None, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_dir(tmp_path / "fashion-mnist")
    monkeypatch.setenv(formats.ENV_VAR, str(tmp_path))
    assert len(sources.get(cfg()).test) == 20


def test_idx_found_in_system_dir(tmp_path: Path, no_system_data: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "SYSTEM_DIRS", {"fashion-mnist": [make_idx_dir(tmp_path / "sys")]})
    assert len(sources.get(cfg(dir=str(tmp_path / "empty"))).test) == 20


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="apt package dataset-fashion-mnist not installed")
def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(formats.ENV_VAR, raising=False)
    ds = sources.get(cfg(val_fraction=0.0))
    assert (len(ds.train), len(ds.test), len(ds.classes)) == (60000, 10000, 10)
    assert ds.train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10


def test_missing_dataset_message(tmp_path: Path, no_system_data: None) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        sources.get(cfg(dir=str(tmp_path / "empty")))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "empty") in msg and "dataset-fashion-mnist" in msg
    assert "data.dir" in msg and "--data-dir" in msg and "download" in msg


def test_cifar10_pickles(tmp_path: Path, no_system_data: None) -> None:
    ds = sources.get(cfg(name="cifar10", dir=str(make_cifar10(tmp_path)), val_fraction=0.0))
    assert ds.channels == 3 and ds.classes[:2] == ["c0", "c1"]
    assert ds.train.images.shape == (60, 3, 32, 32) and len(ds.test) == 12
    assert len(ds.val) == 0


def test_cifar100_fine_labels(tmp_path: Path, no_system_data: None) -> None:
    ds = sources.get(cfg(name="cifar100", dir=str(make_cifar100(tmp_path)), val_fraction=0.0))
    assert len(ds.classes) == 100 and ds.classes[99] == "f99"
    assert int(ds.train.labels.max()) == 99 and len(ds.train) == 300


def test_cifar_pickle_refuses_code(tmp_path: Path) -> None:
    import os
    import pickle

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("true",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(DataError, match="not a CIFAR python batch"):
        formats.read_cifar_pickle(path)


def test_imagefolder_class_folders(tmp_path: Path, no_system_data: None) -> None:
    ds = sources.get(cfg(name="imagefolder", dir=str(make_imagefolder(tmp_path)), val_fraction=0.0))
    assert ds.classes == ["class0", "class1", "class2"] and not ds.in_memory
    assert len(ds.train) == 3 * 6 + 2  # the two corrupt files are found only when decoded
    assert len(ds.test) == 6 and all(p.suffix in (".jpg",) for p in ds.test.paths)
    assert not any(p.suffix == ".txt" for p in ds.train.paths)


def test_imagefolder_flat_val_with_labels_file(tmp_path: Path, no_system_data: None) -> None:
    root = make_imagefolder(tmp_path, flat_val=True, corrupt=False)
    ds = sources.get(cfg(name="imagefolder", dir=str(root), val_fraction=1 / 6))
    assert len(ds.test) == 6 and ds.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(ds.val) == 3 and len(ds.train) == 15


def test_imagefolder_wrong_layout(tmp_path: Path, no_system_data: None) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DataError, match="train/<class>/<image>"):
        sources.get(cfg(name="imagefolder", dir=str(tmp_path)))


def test_empty_class_folder_is_an_error(tmp_path: Path, no_system_data: None) -> None:
    root = make_imagefolder(tmp_path, corrupt=False)
    (root / "train" / "class9").mkdir()
    with pytest.raises(DataError, match="class9"):
        sources.get(cfg(name="imagefolder", dir=str(root)))


@pytest.mark.parametrize("clutter", [False, True])
def test_caltech256_protocol(tmp_path: Path, no_system_data: None, clutter: bool) -> None:
    root = make_caltech(tmp_path)
    c = cfg(name="caltech256", dir=str(root), train_per_class=5, clutter=clutter, val_fraction=0.0)
    ds = sources.get(c, seed=3)
    assert len(ds.classes) == (4 if clutter else 3) and ds.classes[0] == "ak47"
    assert torch.bincount(ds.train.labels).tolist() == [5] * len(ds.classes)
    expected_test = [3, 5, 7] + ([4] if clutter else [])
    assert torch.bincount(ds.test.labels).tolist() == expected_test
    assert not set(ds.train.paths) & set(ds.test.paths)
    again = sources.get(c, seed=3)
    assert again.train.paths == ds.train.paths
    assert sources.get(c, seed=4).train.paths != ds.train.paths
    report = sources.balance_report(ds)
    assert "max/min" in report and "test" in report
    assert sources.class_balance(ds)["test"]["imbalance"] == pytest.approx(7 / 3)


def test_caltech256_wrong_layout(tmp_path: Path, no_system_data: None) -> None:
    (tmp_path / "cats").mkdir()
    with pytest.raises(DataError, match="001.ak47"):
        sources.get(cfg(name="caltech256", dir=str(tmp_path)))


def test_synthetic_any_size_and_subset() -> None:
    c = cfg(name="synthetic", image_size=40, num_classes=7, num_train=100, num_test=30, val_fraction=0.1, subset=50)
    ds = sources.get(c, seed=1)
    assert ds.train.images.shape == (50, 3, 40, 40) and len(ds.test) == 30 and len(ds.classes) == 7
    assert torch.equal(sources.get(c, seed=1).train.images, ds.train.images)


def test_val_carve_is_seeded_and_disjoint() -> None:
    split = sources.Split(labels=torch.arange(100) % 4, images=torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1))
    tr, va = sources.carve(split, 0.2, seed=0)
    tr2, va2 = sources.carve(split, 0.2, seed=0)
    _, va3 = sources.carve(split, 0.2, seed=1)
    assert torch.equal(va.images, va2.images) and not torch.equal(va.images, va3.images)
    ids = set(tr.images.flatten().tolist()) | set(va.images.flatten().tolist())
    assert len(ids) == 100 and len(va) == 20


def test_registry() -> None:
    assert {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "caltech256", "synthetic"} <= set(
        sources.names())
    with pytest.raises(ConfigError, match="already registered"):
        sources.register("mnist")(lambda c, s: None)
    with pytest.raises(ConfigError, match="fashion-mnist"):
        sources.get(cfg(name="fashion_mnist"))
