"""Every configs/paper/*.yaml is the paper's recipe (section 3.1), value by value (docs/paper.md)."""

from pathlib import Path

import pytest

from vggnet import config

ROOT = Path(__file__).resolve().parents[2]
PRESETS = sorted(p for p in (ROOT / "configs" / "paper").glob("*.yaml") if not p.stem.endswith("-loc"))


def test_every_step_of_the_paper_has_a_preset():
    names = {p.stem for p in PRESETS}
    assert {"A", "A-LRN", "B", "C", "D", "E"} <= names
    assert {f"{n}-{s}" for n in "CDE" for s in ("s384", "jitter")} <= names


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_paper_preset_values(path):
    cfg = config.load(path)
    t, d, m = cfg.train, cfg.data, cfg.model
    letter, _, step = path.stem.partition("-")
    if letter == "A" and step == "LRN":
        letter, step = "A-LRN", ""
    # the optimiser: mini-batch SGD, batch 256, plain momentum 0.9, weight decay 5e-4
    assert (t.optimizer, t.batch_size, t.momentum, t.nesterov, t.weight_decay) == ("sgd", 256, 0.9, False, 5e-4)
    # lr 1e-2 (S=384 and jittered nets start from a trained net at 1e-3), /10 on a plateau, at most 3 times
    assert t.lr == (0.001 if step in ("s384", "jitter") else 0.01)
    assert (t.schedule, t.plateau_max_decreases, t.epochs, t.warmup_epochs) == ("plateau", 3, 74, 0)
    assert t.label_smoothing == 0 and t.grad_clip is None
    assert t.amp is False  # fp32
    # the net: the paper's letter, no BN, full width, the fc head, dropout 0.5 on FC1-2
    assert (m.name, m.batch_norm, m.width, m.head, m.dropout) == (letter, False, 1.0, "fc", 0.5)
    # the input: RGB 0-255 minus the mean pixel; 224 crops, flips, colour shift 0.1, no padding
    assert (d.normalize, d.image_size, d.flip, d.colour_shift, d.pad) == ("paper", 224, True, 0.1, 0)
    assert d.scale == {"": [256], "s384": [384], "jitter": [256, 512]}[step]
    # the init chain: A from random std0.01; B-E pre-initialised from A; S=384 from S=256; jitter from S=384
    if step == "":
        assert m.init == "std0.01"
        if letter in ("A", "A-LRN"):
            assert m.pre_initialise is None and cfg.init_from is None
        else:
            assert m.pre_initialise == "runs/paper-A-s256/model.safetensors"
    else:
        source = {"s384": "s256", "jitter": "s384"}[step]
        assert cfg.init_from == f"runs/paper-{letter}-{source}/model.safetensors" and m.pre_initialise is None
    assert cfg.name == f"paper-{letter}-{step or 's256'}"


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_paper_presets_test_as_the_paper(path):
    """Table 3's protocol is dense evaluation at Q=S; jittered nets add Table 5's at Q={256,384,512}."""
    cfg = config.load(path)
    assert "dense" in cfg.eval.protocols
    if path.stem.endswith("jitter"):
        assert cfg.eval.scales == [256, 384, 512] and {"multi_crop", "fusion"} <= set(cfg.eval.protocols)


@pytest.mark.parametrize("key,value,valid", [("model.init", "pape", "std0.1, std0.01, glorot, kaiming"),
                                             ("data.normalize", "mean", "paper, caffe, standardize, unit-mean, none")])
def test_unknown_init_or_normalisation_lists_the_valid_names(key, value, valid):
    with pytest.raises(config.ConfigError, match=valid):
        config.load(None, [f"{key}={value}"])


def test_the_retired_init_name_says_what_to_use():
    with pytest.raises(config.ConfigError, match="std0.1.*std0.01"):
        config.load(None, ["model.init=paper"])


def test_the_localisation_preset_is_appendix_a():
    """D fine-tuned from the classification D at lr 1e-3, Euclidean box loss, per-class boxes (Table 8's best)."""
    cfg = config.load(ROOT / "configs" / "paper" / "D-loc.yaml")
    t, d, m = cfg.train, cfg.data, cfg.model
    assert (t.optimizer, t.batch_size, t.momentum, t.nesterov, t.weight_decay, t.lr) == ("sgd", 256, 0.9, False,
                                                                                          5e-4, 0.001)
    assert t.amp is False and t.label_smoothing == 0 and (d.normalize, d.image_size, d.scale) == ("paper", 224, [256])
    assert (m.name, m.batch_norm, m.box_head, m.width) == ("D", False, "pcr", 1.0)
    assert cfg.loc.classifier == "runs/paper-D-s256/model.safetensors" and cfg.loc.finetune == "all"
