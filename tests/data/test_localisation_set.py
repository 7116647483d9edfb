"""The derived localisation set: deterministic, boxes exactly the placed item's extent."""

import pytest
import torch
from data_layouts import cfg, make_idx_dir

from vggnet.data import sources
from vggnet.data.localisation import CLUTTER_GAIN, derive, tight_boxes
from vggnet.errors import ConfigError


def items(n=12):
    """Items whose ink is a known rectangle: rows 4..19, columns 8..23 of a 28x28 image."""
    x = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 4:20, 8:24] = 255
    return x, torch.arange(n) % 10


def test_tight_boxes_are_the_ink_extent_and_blank_items_are_skipped(capsys):
    x, y = items(3)
    x[1] = 0
    x[1, 0, 0, 27] = 200
    assert tight_boxes(x[:2]).tolist() == [[8.0, 4.0, 24.0, 20.0], [27.0, 0.0, 28.0, 1.0]]
    x[2] = 10  # below the ink threshold everywhere: no box
    split = derive(x, y, canvas=64, seed=0)
    assert split.labels.tolist() == [0, 1] and "skipped 1 items without ink" in capsys.readouterr().out


def test_derived_boxes_enclose_the_item_and_nothing_bright_lies_outside():
    x, y = items()
    split = derive(x, y, canvas=64, seed=3)
    assert split.images.shape == (12, 1, 64, 64) and torch.equal(split.labels, y)
    for image, box in zip(split.images[:, 0].float(), split.boxes):
        x1, y1, x2, y2 = box.tolist()
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
        inside = image[int(y1) + 1:int(y2) - 1, int(x1) + 1:int(x2) - 1]
        assert inside.min() > 200  # the item fills its box (bilinear edges aside)
        outside = image.clone()
        outside[max(0, int(y1) - 1):int(y2) + 2, max(0, int(x1) - 1):int(x2) + 2] = 0
        assert outside.max() <= CLUTTER_GAIN * 255 + 1  # only dimmed clutter outside the box
    sides = (split.boxes[:, 2:] - split.boxes[:, :2]) / torch.tensor([16.0, 16.0]) * 28 / 64
    assert ((sides >= 0.4 - 0.02) & (sides <= 0.8 + 0.02)).all()  # the item is 40-80% of the canvas


def test_derived_set_is_deterministic_from_its_seed():
    x, y = items()
    a, b, c = derive(x, y, canvas=64, seed=1), derive(x, y, canvas=64, seed=1), derive(x, y, canvas=64, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.boxes, c.boxes)


def test_registered_set_from_fashion_mnist_files(tmp_path, no_system_data):
    root = make_idx_dir(tmp_path / "fm", n_train=40, n_test=10)
    ds = sources.get(cfg(name="fashion-mnist-loc", dir=str(root), image_size=48, num_train=30, num_test=8,
                         val_fraction=0.2), seed=5)
    assert len(ds.train) + len(ds.val) == 30 and len(ds.val) >= 5 and len(ds.test) == 8
    assert ds.train.boxes.shape == (len(ds.train), 4) and ds.classes[0] == "T-shirt/top"
    again = sources.get(cfg(name="fashion-mnist-loc", dir=str(root), image_size=48, num_train=30, num_test=8,
                            val_fraction=0.2), seed=6)
    assert torch.equal(ds.test.images, again.test.images)  # the canvases do not depend on the run seed


def test_canvas_too_small_is_a_config_error():
    x, y = items(2)
    with pytest.raises(ConfigError, match="image_size"):
        derive(x, y, canvas=16, seed=0)
