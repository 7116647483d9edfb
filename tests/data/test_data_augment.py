"""The paper's augmentations: scale range, crop sizes, exact flips, zero-mean colour shift, stats."""

from __future__ import annotations

import pytest
import torch

from vggnet.data import augment as A
from vggnet.data.sources import Split
from vggnet.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 3, h: int = 20, w: int = 24) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, h, w), generator=gen(42), dtype=torch.uint8)


def test_sample_scales_stay_in_range_and_cover_it() -> None:
    s = A.sample_scales(20000, [256, 512], gen())
    assert int(s.min()) >= 256 and int(s.max()) <= 512
    assert int(s.min()) == 256 and int(s.max()) == 512  # both ends reachable
    assert abs(float(s.double().mean()) - 384) < 3
    assert A.sample_scales(5, [384], gen()).tolist() == [384] * 5


def test_scale_jitter_crops_have_the_crop_size() -> None:
    crops, s = A.scale_jitter(images(), 32, 48, 28, gen())
    assert crops.shape == (16, 3, 28, 28) and crops.dtype == torch.uint8
    assert ((s >= 32) & (s <= 48)).all()


def test_scaled_crop_at_native_scale_is_an_exact_crop() -> None:
    x = images(8, h=20, w=24)
    out = A.scaled_random_crop(x, torch.full((8,), 20), 16, gen(3))
    for i in range(8):  # each output must be some 16x16 window of the original image
        windows = x[i].unfold(1, 16, 1).unfold(2, 16, 1)  # [C, 5, 9, 16, 16]
        match = (windows == out[i][:, None, None]).all(0).all(-1).all(-1)
        assert match.any()


def test_rescale_shorter_side() -> None:
    assert A.rescale(images(h=20, w=30), 40).shape[-2:] == (40, 60)
    assert A.rescale(images(h=30, w=20).float(), 10).shape[-2:] == (15, 10)


def test_random_and_centre_crop_sizes() -> None:
    x = images()
    assert A.random_crop(x, 16, gen()).shape == (16, 3, 16, 16)
    assert torch.equal(A.centre_crop(x, 16), x[..., 2:18, 4:20])
    with pytest.raises(Exception, match="larger than the images"):
        A.random_crop(x, 21, gen())


def test_pad_random_crop_is_a_shift_with_zero_fill() -> None:
    x = images(64, c=1, h=28, w=28)
    padded = A.centre_pad(x, 32)
    assert padded.shape[-2:] == (32, 32) and torch.equal(padded[..., 2:30, 2:30], x)
    out = A.pad_random_crop(padded, 4, gen())
    assert out.shape == (64, 1, 32, 32)
    big = torch.nn.functional.pad(padded, (4, 4, 4, 4))
    for i in range(64):
        windows = big[i].unfold(1, 32, 1).unfold(2, 32, 1)
        assert (windows == out[i][:, None, None]).all(0).all(-1).all(-1).any()
    assert not all(torch.equal(out[i], padded[i]) for i in range(64))


def test_flip_is_an_exact_mirror() -> None:
    x = images()
    flipped = A.hflip(x)
    assert torch.equal(flipped[..., 0], x[..., -1]) and torch.equal(A.hflip(flipped), x)
    some = A.hflip(x, gen())
    mirrored = [torch.equal(some[i], x[i].flip(-1)) for i in range(len(x))]
    kept = [torch.equal(some[i], x[i]) for i in range(len(x))]
    assert all(m or k for m, k in zip(mirrored, kept)) and any(mirrored) and any(kept)


def test_colour_shift_is_zero_mean_over_many_draws() -> None:
    eigval = [0.2175, 0.0188, 0.0045]
    eigvec = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]
    x = torch.full((20000, 3, 2, 2), 0.5)
    shifted = A.colour_shift(x, eigval, eigvec, 0.1, gen())
    delta = (shifted - x)[:, :, 0, 0]
    assert torch.allclose(delta.mean(0), torch.zeros(3), atol=5e-4)
    assert float(delta.std(0).max()) > 0.01  # it does shift
    # one shift per image, the same at every pixel
    assert torch.allclose(shifted[:, :, 0, 0], shifted[:, :, 1, 1])
    # covariance of the shifts is V diag((0.1 * lambda)^2) V^T
    v, lam = torch.tensor(eigvec), torch.tensor(eigval)
    expected = v @ torch.diag((0.1 * lam) ** 2) @ v.T
    assert torch.allclose(torch.cov(delta.T), expected, atol=5e-5)


def test_compute_stats_and_pca() -> None:
    g = gen()
    base = torch.rand(500, 1, 8, 8, generator=g)
    rgb = torch.cat([base, base * 0.5 + 0.25, torch.rand(500, 1, 8, 8, generator=g) * 0.2], 1)
    split = Split(labels=torch.zeros(500, dtype=torch.int64), images=(rgb * 255).round().to(torch.uint8))
    stats = A.compute_stats(split, max_images=500)
    assert stats.mean == pytest.approx([0.5, 0.5, 0.1], abs=0.01)
    assert stats.std == pytest.approx([0.2887, 0.1443, 0.0577], abs=0.01)
    assert stats.eigval[0] >= stats.eigval[1] >= stats.eigval[2] >= 0
    assert A.Stats.from_dict(stats.to_dict()) == stats
    top = torch.tensor(stats.eigvec)[:, 0].abs()
    assert top[0] > top[1] > top[2]  # the dominant colour direction is mostly red, then green


def test_normalize_modes() -> None:
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2)
    st = A.Stats([0.5], [0.25])
    assert A.normalize(x, st, "none").flatten().tolist() == [0.0, 1.0]
    assert A.normalize(x, st, "unit-mean").flatten().tolist() == pytest.approx([-0.5, 0.5])
    # the paper's regime: pixel values 0-255 minus the mean pixel (0.5 * 255), nothing else
    assert A.normalize(x, st, "paper").flatten().tolist() == pytest.approx([-127.5, 127.5])
    assert A.normalize(x, st, "standardize").flatten().tolist() == pytest.approx([-2.0, 2.0])
    assert torch.allclose(A.normalize(x.float() / 255, st, "standardize"), A.normalize(x, st, "standardize"))
    rgb = A.normalize(A.convert_channels(x, 3), st, "standardize")  # stats follow the conversion
    assert rgb.shape == (1, 3, 1, 2) and rgb.flatten().tolist() == pytest.approx([-2.0, 2.0] * 3)


def test_paper_and_caffe_regimes_are_0_255_minus_the_mean_pixel_in_rgb_and_bgr() -> None:
    x = torch.tensor([10, 100, 200], dtype=torch.uint8).view(1, 3, 1, 1)  # R, G, B
    st = A.Stats([0.2, 0.4, 0.6], [0.1, 0.1, 0.1])
    paper = A.normalize(x, st, "paper").flatten().tolist()
    assert paper == pytest.approx([10 - 51, 100 - 102, 200 - 153], abs=1e-4)
    assert A.normalize(x, st, "caffe").flatten().tolist() == pytest.approx(paper[::-1], abs=1e-4)  # B, G, R


def test_unknown_normalisation_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="paper, caffe, standardize, unit-mean, none"):
        A.normalize(torch.zeros(1, 1, 2, 2), A.Stats([0.0], [1.0]), "mean")


def test_convert_channels() -> None:
    gray = images(c=1)
    rgb = A.convert_channels(gray, 3)
    assert rgb.shape[1] == 3 and torch.equal(rgb[:, 2], gray[:, 0])
    back = A.convert_channels(rgb, 1)
    assert back.dtype == torch.uint8 and (back.int() - gray.int()).abs().max() <= 1
    with pytest.raises(Exception, match="channels"):
        A.convert_channels(images(c=2), 3)


def test_random_erase_zeroes_one_rectangle_per_chosen_image() -> None:
    x = torch.randn(400, 3, 32, 32, generator=gen(1)) + 10  # no zeros before erasing
    out = A.random_erase(x, 0.5, gen(2))
    erased = (out == 0).all(1)  # [n, h, w]: every channel erased together
    counts = erased.flatten(1).sum(1)
    chosen = counts > 0
    assert 140 < int(chosen.sum()) < 260  # p = 0.5 of 400
    for mask, count in zip(erased[chosen], counts[chosen]):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert count == len(rows) * len(cols)  # one filled rectangle
        assert rows.tolist() == list(range(rows[0], rows[-1] + 1))
        assert cols.tolist() == list(range(cols[0], cols[-1] + 1))
    share = counts[chosen].double() / (32 * 32)
    assert share.min() >= 0.005 and share.max() <= 0.40  # 2-33% of the area, up to rounding and clamping
    kept = ~erased[:, None].expand_as(x)
    assert torch.equal(out[kept], x[kept])  # the rest is untouched
    assert torch.equal(out, A.random_erase(x, 0.5, gen(2)))  # the generator decides
    assert torch.equal(A.random_erase(x, 0.0, gen(2)), x)


def test_random_erase_applies_to_training_batches_only() -> None:
    from vggnet.config import DataConfig
    from vggnet.data.loaders import make_loader
    from vggnet.data.sources import Dataset

    data = images(64, 1, 32, 32).clamp(min=1)
    split = Split(images=data, labels=torch.zeros(64, dtype=torch.long))
    ds = Dataset(name="t", classes=["a", "b"], channels=1, train=split, val=split, test=split, in_memory=True)
    stats = A.Stats([0.0], [1.0])
    cfg = DataConfig(erase=1.0, pad=0, flip=False, normalize="none")
    train = next(make_loader(ds, "train", cfg, train=True, batch_size=64, stats=stats, channels=1).epoch(0))[0]
    test = next(make_loader(ds, "test", cfg, train=False, batch_size=64, stats=stats, channels=1).epoch(0))[0]
    assert ((train == 0).flatten(1).any(1)).all() and not (test == 0).any()
