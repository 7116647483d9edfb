"""Loaders: determinism, exact resume, sharding, corrupt files, channel conversion, raw iteration."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from data_layouts import cfg, make_idx_dir, make_imagefolder
from vggnet.data import augment as A
from vggnet.data import loaders, sources
from vggnet.errors import DataError


def synthetic(**kw) -> tuple[sources.Dataset, A.Stats]:  # noqa: ANN003
    c = cfg(name="synthetic", num_train=300, num_test=50, **kw)
    ds = sources.get(c)
    return ds, A.compute_stats(ds.train)


def batches(loader: loaders.Loader, epoch: int, start: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(epoch, start_batch=start))


@pytest.mark.parametrize("extra", [dict(image_size=32, pad=4), dict(image_size=24, scale=[28, 40], colour_shift=0.1)])
def test_same_seed_same_batches_and_exact_resume(extra: dict) -> None:
    c = cfg(name="synthetic", num_train=300, num_test=50, **extra)
    ds = sources.get(c)
    stats = A.compute_stats(ds.train)
    make = lambda seed: loaders.make_loader(ds, "train", c, train=True, batch_size=32, stats=stats,  # noqa: E731
                                            channels=3, seed=seed)
    a, b = batches(make(0), 1), batches(make(0), 1)
    assert len(a) == len(make(0)) == 270 // 32
    size = extra["image_size"]
    assert all(x.shape == (32, 3, size, size) and x.dtype == torch.float32 for x, _ in a)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    resumed = batches(make(0), 1, start=3)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a[3:], resumed)) and len(resumed) == len(a) - 3
    assert not torch.equal(batches(make(1), 1)[0][0], a[0][0])
    assert not torch.equal(batches(make(0), 2)[0][1], a[0][1])  # a new order each epoch


def test_shards_are_disjoint_and_equal() -> None:
    ds, stats = synthetic(val_fraction=0.0)
    c = cfg(name="synthetic")
    seen = []
    for rank in range(3):
        loader = loaders.make_loader(ds, "train", c, train=True, batch_size=10, stats=stats, channels=3, rank=rank,
                                     world_size=3)
        order = loader.order(0)
        assert len(loader) == 10 and loader.num_images == 100
        seen.append(set(order.tolist()))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and len(set.union(*seen)) == 300
    test = [loaders.make_loader(ds, "test", c, train=False, batch_size=8, stats=stats, channels=3, rank=r,
                                world_size=3).order(0) for r in range(3)]
    assert sorted(torch.cat(test).tolist()) == list(range(50))


def test_eval_is_deterministic_and_unflipped() -> None:
    ds, stats = synthetic(image_size=32)
    c = cfg(name="synthetic", image_size=32, normalize="none")
    loader = loaders.make_loader(ds, "test", c, train=False, batch_size=16, stats=stats, channels=3)
    xs = torch.cat([x for x, _ in loader.epoch(0)])
    assert torch.allclose(xs, ds.test.images.float() / 255) and len(loader) == 4


def test_fashion_mnist_pads_to_32_and_converts_to_rgb(tmp_path: Path, no_system_data: None) -> None:
    make_idx_dir(tmp_path)
    c = cfg(dir=str(tmp_path), image_size=32, pad=4)
    ds = sources.get(c)
    stats = A.compute_stats(ds.train)
    with pytest.warns(UserWarning, match="converting"):
        loader = loaders.make_loader(ds, "train", c, train=True, batch_size=8, stats=stats, channels=3)
    x, y = next(loader.epoch(0))
    assert x.shape == (8, 3, 32, 32) and torch.equal(x[:, 0], x[:, 2])
    ev = loaders.make_loader(ds, "test", cfg(dir=str(tmp_path), normalize="none"), train=False, batch_size=4,
                             stats=stats, channels=1)
    x, _ = next(ev.epoch(0))
    assert x.shape == (4, 1, 32, 32) and torch.allclose(x[:, :, 2:30, 2:30], ds.test.images[:4].float() / 255)
    assert float(x[:, :, :2].abs().sum()) == 0  # zero border


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_loader_skips_and_counts_corrupt_files(tmp_path: Path, no_system_data: None, workers: int) -> None:
    root = make_imagefolder(tmp_path)
    c = cfg(name="imagefolder", dir=str(root), image_size=24, scale=[28, 36], val_fraction=0.0, workers=workers,
            colour_shift=0.1)
    ds = sources.get(c)
    stats = A.compute_stats(ds.train)
    assert len(stats.eigval) == 3
    loader = loaders.make_loader(ds, "train", c, train=True, batch_size=5, stats=stats, channels=3, seed=7)
    with pytest.warns(UserWarning, match="skipped 2 unreadable") as record:
        got = batches(loader, 0)
    assert "zz_" in str(record[0].message)
    assert loader.skipped == 2 and len(got) == 4
    assert sum(len(y) for _, y in got) == 20 - 2
    assert all(x.shape[1:] == (3, 24, 24) for x, _ in got)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = batches(loader, 0, start=1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(got[1:], again))
    assert loader.skipped == 2  # counted once per file


def test_folder_loader_same_batches_with_any_worker_count(tmp_path: Path, no_system_data: None) -> None:
    root = make_imagefolder(tmp_path, corrupt=False)
    out = []
    for workers in (0, 2):
        c = cfg(name="imagefolder", dir=str(root), image_size=24, scale=[24, 40], val_fraction=0.0, workers=workers)
        ds = sources.get(c)
        loader = loaders.make_loader(ds, "train", c, train=True, batch_size=4, stats=A.Stats([0.5] * 3, [0.25] * 3),
                                     channels=3, seed=1)
        out.append(batches(loader, 2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(*out))
    with pytest.warns(UserWarning, match="RGB to luminance"):
        ev = loaders.make_loader(ds, "test", c, train=False, batch_size=4, stats=A.Stats([0.5] * 3, [0.25] * 3),
                                 channels=1)
    x, _ = next(ev.epoch(0))
    assert x.shape == (4, 1, 24, 24)


def test_iter_raw_and_load_image(tmp_path: Path, no_system_data: None) -> None:
    root = make_imagefolder(tmp_path)
    ds = sources.get(cfg(name="imagefolder", dir=str(root), val_fraction=0.0))
    with pytest.warns(UserWarning, match="skipped 2"):
        got = list(loaders.iter_raw(ds, "train", 7))
    imgs = [img for batch, _ in got for img in batch]
    labels = torch.cat([y for _, y in got])
    assert len(imgs) == len(labels) == 18 and len(ds.skipped) == 2
    assert {img.shape[0] for img in imgs} == {1, 3}  # gray stored gray
    assert all(img.dtype == torch.uint8 for img in imgs)
    with pytest.raises(DataError, match="not a readable image"):
        loaders.load_image(sorted(ds.skipped)[0])
    mem, _ = synthetic()
    x, y = next(loaders.iter_raw(mem, "test", 20))
    assert x.dtype == torch.uint8 and x.shape == (20, 3, 32, 32) and torch.equal(y, mem.test.labels[:20])


def test_decode_crop_respects_scale(tmp_path: Path) -> None:
    import random

    from data_layouts import write_jpeg
    from vggnet.data.folder import decode_crop

    path = tmp_path / "a.jpg"
    write_jpeg(path, 500, 375, 0)
    for seed in range(5):
        assert decode_crop(path, 224, [256, 512], random.Random(seed)).shape == (3, 224, 224)
    centre = decode_crop(path, 100, [100], None)
    from PIL import Image

    with Image.open(path) as im:
        ref = im.convert("RGB").resize((133, 100), Image.BILINEAR).crop((16, 0, 116, 100))
    diff = (centre.permute(1, 2, 0).int() - torch.from_numpy(__import__("numpy").array(ref)).int()).abs()
    assert float(diff.float().mean()) < 8  # same region as rescale-then-crop


def test_empty_split_is_a_clear_error() -> None:
    ds, stats = synthetic(val_fraction=0.0)
    with pytest.raises(DataError, match="empty val split"):
        loaders.make_loader(ds, "val", cfg(name="synthetic"), train=False, batch_size=4, stats=stats, channels=3)
