"""The paper's test protocols: dense == fc, the 5x5x2 crop grid, flip averaging, ensembles, agreement."""

import copy

import pytest
import torch

from vggnet.data import loaders
from vggnet.errors import ConfigError
from vggnet.eval import protocols as P
from vggnet.eval.preprocess import Preprocessing
from vggnet.model.vgg import build_model

from .conftest import tiny_config


def _images(n, size=32, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def test_dense_on_224_equals_the_fc_head(stats):
    fc = build_model("A", num_classes=7, width=0.125, head="fc", batch_norm=False, seed=0).eval()
    prep = Preprocessing.from_config(tiny_config(image_size=224, scale=[224]), stats, 3)
    image = _images(1, 224)
    x = prep.finish(image)
    conv = P.fully_convolutional(fc)
    assert conv is not fc and conv.head == "conv" and fc.head == "fc"
    with torch.no_grad():
        torch.testing.assert_close(conv(x), fc(x), rtol=1e-4, atol=1e-5)
    expected = P.flip_average(fc, x)
    torch.testing.assert_close(P.dense(fc, image, prep), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(P.centre(fc, image, prep), P._softmax(fc, x, 8, False), rtol=1e-4, atol=1e-6)


def test_dense_on_a_larger_image_averages_the_score_map(stats):
    fc = build_model("A", num_classes=5, width=0.125, head="fc", batch_norm=False, seed=0).eval()
    prep = Preprocessing.from_config(tiny_config(image_size=224, scale=[256]), stats, 3)
    image = _images(1, 256)
    x = prep.finish(image)
    conv = P.fully_convolutional(fc)
    with torch.no_grad():
        scores = conv.score_map(conv.forward_features(x))
    assert scores.shape[-2:] == (2, 2)  # 256 px -> 8x8 features -> 7x7 conv -> 2x2 score map
    with torch.no_grad():
        flipped = conv.score_map(conv.forward_features(x.flip(-1)))
    expected = (scores.mean((2, 3)).softmax(1) + flipped.mean((2, 3)).softmax(1)) / 2
    torch.testing.assert_close(P.dense(fc, image, prep), expected, rtol=1e-4, atol=1e-6)


def test_flip_average_is_the_mean_of_image_and_mirror(model, prep):
    images = _images(4)
    probs = P.dense(model, images, prep)
    x = prep.finish(images)
    with torch.no_grad():
        manual = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    torch.testing.assert_close(probs, manual, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(P.dense(model, images.flip(-1), prep), probs, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(P.centre(model, images, prep), P.centre(model, images.flip(-1), prep))


def test_grid_positions_span_the_image():
    assert P.grid_positions(40, 40, 32) == [(t, left) for t in (0, 2, 4, 6, 8) for left in (0, 2, 4, 6, 8)]
    paper = P.grid_positions(256, 341, 224)
    assert len(paper) == 25 and paper[0] == (0, 0) and paper[-1] == (32, 117)
    with pytest.raises(ConfigError):
        P.grid_positions(200, 300, 224)


def test_multi_crop_takes_50_crops_per_scale_at_the_grid(model, prep):
    images = _images(2)
    seen = []
    hook = model.features[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].clone()))
    try:
        probs = P.multi_crop(model, images, prep, scales=[32], batch_size=1000)
        crops = torch.cat(seen)
        seen.clear()
        P.multi_crop(model, images[:1], prep, scales=[32, 36, 40], batch_size=1000)
        assert len(torch.cat(seen)) == 150
    finally:
        hook.remove()
    assert len(crops) == 2 * 50
    # 32 px small images: zero-padded by data.pad on each side, crops on a 5x5 grid over that
    pad = prep.data.pad
    assert pad > 0
    padded = prep.finish(torch.nn.functional.pad(images, (pad, pad, pad, pad)))
    expected = []
    for t, left in P.grid_positions(32 + 2 * pad, 32 + 2 * pad, 32):
        crop = padded[..., t : t + 32, left : left + 32]
        expected += [crop, crop.flip(-1)]
    torch.testing.assert_close(crops, torch.cat(expected))
    with torch.no_grad():
        manual = torch.stack([model(c).softmax(1) for c in expected]).mean(0)
    torch.testing.assert_close(probs, manual, rtol=1e-5, atol=1e-6)


def test_ensemble_of_copies_equals_the_model(model, prep):
    images = _images(5)
    members = [(model, prep), (copy.deepcopy(model), prep), (copy.deepcopy(model), prep)]
    for name in ("centre", "dense"):
        torch.testing.assert_close(P.ensemble(members, images, name), P.run_protocol(name, model, images, prep),
                                   rtol=1e-5, atol=1e-6)
    other = build_model("A", num_classes=10, width=0.125, head="gap", batch_norm=True, seed=5).eval()
    mixed = P.ensemble([(model, prep), (other, prep)], images)
    torch.testing.assert_close(mixed, (P.centre(model, images, prep) + P.centre(other, images, prep)) / 2)


def test_protocols_agree_on_a_constant_model(model, prep):
    with torch.no_grad():
        model.classifier[-1].weight.zero_()
        model.classifier[-1].bias.copy_(torch.linspace(-2, 2, 10))
    expected = torch.linspace(-2, 2, 10).softmax(0).expand(2, 10)
    images = _images(2)
    for name in P.PROTOCOLS:
        torch.testing.assert_close(P.run_protocol(name, model, images, prep), expected, rtol=1e-5, atol=1e-6)


def test_centre_matches_the_evaluation_loader(model, cfg, ds, stats, prep):
    loader = loaders.make_loader(ds, "test", cfg.data, train=False, batch_size=64, stats=stats, channels=3)
    x, y = next(iter(loader.epoch(0)))
    with torch.no_grad():
        expected = model(x).softmax(1)
    torch.testing.assert_close(P.centre(model, ds.test.images[: len(x)], prep), expected, rtol=1e-5, atol=1e-6)


def test_images_of_different_sizes_run_per_size(stats):
    model = build_model("A", num_classes=4, width=0.125, head="gap", seed=0).eval()
    prep = Preprocessing.from_config(tiny_config(image_size=32, scale=[40]), stats, 3)
    images = [_images(1, 50, seed=1)[0], _images(1, 40, channels=1, seed=2)[0], _images(1, 50, seed=3)[0]]
    for name in ("centre", "dense"):
        probs = P.run_protocol(name, model, images, prep)
        for i, image in enumerate(images):
            torch.testing.assert_close(probs[i], P.run_protocol(name, model, image[None], prep)[0])


def test_default_scales_follow_the_paper(stats):
    def scales(**data):
        return Preprocessing.from_config(tiny_config(**data), stats, 3).default_scales(32)

    assert scales(image_size=224, scale=[256]) == [224, 256, 288]
    assert scales(image_size=224, scale=[256, 512]) == [256, 384, 512]
    assert scales() == [32, 36, 40]  # small images: step crop/8, shifted up to the smallest valid input
    assert Preprocessing.from_config(tiny_config(image_size=224, scale=[256, 512]), stats, 3).test_scale == 384


def test_bad_protocols_and_scales_are_explained(model, prep):
    with pytest.raises(ConfigError, match="unknown protocol 'densest'; valid: centre, dense, multi_scale"):
        P.check_protocols(["densest"])
    with pytest.raises(ConfigError, match="two or more"):
        P.check_protocols(["ensemble"])
    assert P.check_protocols(["ensemble", "dense", "dense"], num_models=2) == ["dense"]
    with pytest.raises(ConfigError, match="at least the crop size 32"):
        P.multi_crop(model, _images(1), prep, scales=[24])


def test_evaluate_returns_the_eval_json_dict(model, cfg, ds, stats, tmp_path):
    model.train()
    result = P.evaluate(model, ds, cfg, stats, protocols=("centre", "dense"), limit=20)
    assert model.training  # restored
    assert result["n"] == 20 and set(result["protocols"]) == {"centre", "dense"}
    probs = P.centre(model.eval(), ds.test.images[:20], Preprocessing.from_config(cfg, stats, 3))
    labels = ds.test.labels[:20]
    row = result["protocols"]["centre"]
    assert row["top1_error"] == pytest.approx(float((probs.argmax(1) != labels).float().mean()))
    assert row["n"] == 20 and row["scales"] == [32]
    confusion = torch.tensor(result["confusion"])
    assert confusion.sum() == 20 and confusion.sum(1).tolist() == torch.bincount(labels, minlength=10).tolist()
    assert result["analysis_protocol"] == "centre" and result["classes"] == ds.classes
    assert set(result["per_class"]) == {"precision", "recall", "f1", "support"}
    assert {"prediction_share", "max_share_class", "collapse_warning", "most_confused_pairs",
            "worst_classes"} <= set(result["analysis"])
    path = P.write_eval(result, tmp_path / "eval.json")
    import json

    assert json.loads(path.read_text())["protocols"]["dense"]["n"] == 20


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_evaluate_runs_channels_last_and_restores_the_layout(model, cfg, ds, stats, layout):
    model.to(memory_format=layout)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prep = Preprocessing.from_config(cfg, stats, 3)
    expected = P.dense(model.eval(), ds.test.images[:16], prep)
    result = P.evaluate(model, ds, cfg, stats, protocols=("dense",), limit=16)
    assert result["protocols"]["dense"]["top1_error"] == pytest.approx(
        float((expected.argmax(1) != ds.test.labels[:16]).float().mean()))
    convs = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1]
    assert convs and all(p.is_contiguous(memory_format=layout) for p in convs)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fusion_reuses_multi_scale_and_multi_crop(model, cfg, ds, stats):
    both = P.evaluate(model, ds, cfg, stats, protocols=("multi_scale", "multi_crop", "fusion"), limit=16)
    alone = P.evaluate(model, ds, cfg, stats, protocols=("fusion",), limit=16)
    assert both["protocols"]["fusion"]["top1_error"] == alone["protocols"]["fusion"]["top1_error"]
    rows = both["protocols"]
    assert rows["fusion"]["seconds"] == pytest.approx(rows["multi_scale"]["seconds"] + rows["multi_crop"]["seconds"],
                                                      abs=2e-3)  # charged, not recomputed
    prep = Preprocessing.from_config(cfg, stats, 3)
    images, labels = ds.test.images[:16], ds.test.labels[:16]
    expected = (P.multi_scale(model, images, prep) + P.multi_crop(model, images, prep)) / 2
    assert alone["protocols"]["fusion"]["top1_error"] == pytest.approx(
        float((expected.argmax(1) != labels).float().mean()))


def test_evaluate_refuses_a_model_for_another_dataset(cfg, ds, stats):
    wrong = build_model("A", num_classes=3, width=0.125, head="gap")
    with pytest.raises(ConfigError, match="3 classes but synthetic has 10"):
        P.evaluate(wrong, ds, cfg, stats)
