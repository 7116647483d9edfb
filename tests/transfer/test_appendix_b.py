"""Appendix B as the paper ran it: D & E and per-scale stacking, VOC-2007 11-point mAP with
per-class SVMs, the Caltech protocol (random splits, mean class recall); by hand, and through
`vggnet features --protocol` on small sets written in VOC's and Caltech's layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vggnet.cli import main
from vggnet.errors import ConfigError
from vggnet.model.vgg import build_model
from vggnet.transfer.appendix_b import (caltech_protocol, caltech_splits, mean_class_recall, stack, voc07_ap,
                                        voc_map)
from vggnet.transfer.features import Describer
from vggnet.weights.formats import save_as
from vggnet.weights.preprocess import imagenet

pytest.importorskip("sklearn")


def test_voc07_ap_is_the_11_point_interpolation_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, -1, 1, 0, -1])  # the 0.6 image is "difficult": left out
    # ranked: P/R = 1/0.5, 0.5/0.5, 2/3/1, 0.5/1; recall >= 0..0.5 -> max P 1 (6 points), 0.6..1 -> 2/3 (5)
    assert voc07_ap(scores, labels) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert voc07_ap(np.array([0.1, 0.9]), np.array([1, -1])) == pytest.approx((11 * 0.5) / 11)
    with pytest.raises(ConfigError, match="positive"):
        voc07_ap(scores, -np.ones(5))


def test_mean_class_recall_by_hand():
    labels, predicted = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 0, 1, 1, 0, 2])
    assert mean_class_recall(predicted, labels) == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # not accuracy (4/6)


def test_caltech_splits_take_n_per_class_and_differ():
    labels = torch.tensor([0] * 40 + [1] * 35 + [2] * 31)
    splits = caltech_splits(labels, 30, test_per_class=4, splits=3, seed=0)
    assert len(splits) == 3
    for train, test in splits:
        assert np.bincount(labels.numpy()[train]).tolist() == [30, 30, 30]
        assert np.bincount(labels.numpy()[test]).tolist() == [4, 4, 1]  # up to 4: class 2 has 1 left
        assert not set(train) & set(test)
    assert not np.array_equal(np.sort(splits[0][0]), np.sort(splits[1][0]))
    with pytest.raises(ConfigError, match="none left to test"):
        caltech_splits(labels, 31)


def test_stacking_d_and_e_and_per_scale():
    a, b = torch.rand(3, 5), torch.rand(3, 7)
    s = stack(a, b)
    assert s.shape == (3, 12) and torch.allclose(s.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(s[:, :5] * 2 ** 0.5, torch.nn.functional.normalize(a, dim=1))  # equal weight
    model = build_model("A", num_classes=4, width=0.125, head="gap", seed=0)
    x = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    pre = {**imagenet(), "image_size": 32}
    stacked = Describer(model, pre, scales=[32, 40], stack_scales=True)(x)
    one = [Describer(model, pre, scales=[q])(x) for q in (32, 40)]
    torch.testing.assert_close(stacked, stack(*one))


def test_voc_map_and_caltech_recall_on_separable_descriptors():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 4
    y = np.repeat(np.arange(3), 40)
    x = torch.tensor(centres[y] + rng.normal(0, 0.3, (120, 3)))
    multi = -torch.ones(120, 3, dtype=torch.int8)
    multi[torch.arange(120), torch.tensor(y)] = 1
    result = voc_map(x[::2], multi[::2], x[1::2], multi[1::2], ["a", "b", "c"])
    assert result["map"] == pytest.approx(1.0) and set(result["ap"]) == {"a", "b", "c"}
    caltech = caltech_protocol(x, torch.tensor(y), train_per_class=10, splits=3)
    assert caltech["splits"] == [1.0, 1.0, 1.0] and caltech["std"] == 0.0


VOC_XML = """<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>
<size><width>40</width><height>40</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJ = ("<object><name>{cls}</name><difficult>{hard}</difficult>"
           "<bndbox><xmin>2</xmin><ymin>2</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object>")
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def _write(path, colour, seed):
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(COLOURS[colour])[None, None] + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def test_voc_protocol_command_on_a_voc_layout(tmp_path, capsys):
    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    ids = {"trainval": [f"{i:06d}" for i in range(12)], "test": [f"{i:06d}" for i in range(100, 108)]}
    for split, names in ids.items():
        (root / f"ImageSets/Main/{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            colour = "red" if k % 2 else "blue"
            objects = VOC_OBJ.format(cls=colour, hard=0) + (VOC_OBJ.format(cls="blue", hard=1) if k == 1 else "")
            (root / f"Annotations/{name}.xml").write_text(VOC_XML.format(name=name, objects=objects))
            _write(root / f"JPEGImages/{name}.jpg", colour, seed=k + len(split))
    model = build_model("A", num_classes=3, width=0.125, head="gap", seed=0)
    save_as(model, tmp_path / "w.safetensors")
    out = tmp_path / "voc.json"
    code = main(["features", "--weights", str(tmp_path / "w.safetensors"), str(tmp_path / "w.safetensors"),
                 "--protocol", "voc", "--data-dir", str(root), "--layer", "conv", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["ap"]) == {"blue", "red"} and result["n_train"] == 12 and result["n_test"] == 8
    assert result["map"] > 0.9  # colours are trivially separable; AP is well defined
    assert "mAP" in capsys.readouterr().out


def test_caltech_protocol_command_on_a_caltech_layout(tmp_path, capsys):
    base = tmp_path / "256_ObjectCategories"
    for k, colour in enumerate(COLOURS):
        folder = base / f"{k + 1:03d}.{colour}"
        folder.mkdir(parents=True)
        for i in range(9):
            _write(folder / f"{k + 1:03d}_{i + 1:04d}.jpg", colour, seed=10 * k + i)
    model = build_model("A", num_classes=3, width=0.125, head="gap", seed=0)
    save_as(model, tmp_path / "w.safetensors")
    out = tmp_path / "caltech.json"
    code = main(["features", "--weights", str(tmp_path / "w.safetensors"), "--data", "caltech256",
                 "--data-dir", str(tmp_path), "--set", "data.train_per_class=5", "--layer", "conv",
                 "--protocol", "caltech", "--splits", "3", "--scales", "32", "40", "--stack-scales",
                 "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert len(result["splits"]) == 3 and result["train_per_class"] == 5
    assert result["mean_class_recall"] > 0.9
    assert "mean class recall" in capsys.readouterr().out


def test_caltech101_layout_with_its_background_class(tmp_path):
    from vggnet.config import DataConfig
    from vggnet.data import sources

    for cls, n in (("BACKGROUND_Google", 6), ("accordion", 5), ("airplanes", 8)):
        (tmp_path / "101_ObjectCategories" / cls).mkdir(parents=True)
        for i in range(n):
            _write(tmp_path / "101_ObjectCategories" / cls / f"image_{i + 1:04d}.jpg", "red", seed=i)
    ds = sources.get(DataConfig(name="caltech101", dir=str(tmp_path), train_per_class=3, download=False), seed=0)
    assert ds.classes == ["BACKGROUND_Google", "accordion", "airplanes"]
    assert torch.bincount(ds.train.labels).tolist() == [3, 3, 3]
    assert torch.bincount(ds.test.labels).tolist() == [3, 2, 5]
