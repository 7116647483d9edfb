"""The localisation loop (Appendix A): init from the classifier, the Euclidean loss, FC-only
fine-tuning, the run directory and eval.json with the baselines; config errors are one line."""

import json

import pytest
import torch

import vggnet
from vggnet import config
from vggnet.errors import ConfigError
from vggnet.train.localisation import _view, euclidean_loss, init_from_classifier
from vggnet.weights.native import save_weights


def test_euclidean_loss_is_caffes():
    pred, target = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.0, 0.0, 0.0, 0.0]]), torch.zeros(2, 4)
    assert float(euclidean_loss(pred, target)) == pytest.approx((0.25 + 0.25 + 0.04 + 0.04) / 4)


def test_box_net_starts_from_every_layer_of_the_classifier_but_the_last(tmp_path):
    cls = vggnet.build_model("D", num_classes=5, head="fc", width=0.0625, seed=1)
    path = save_weights(cls, tmp_path / "cls.safetensors")
    box = init_from_classifier(vggnet.build_model("D", num_classes=5, head="fc", width=0.0625, box_head="pcr",
                                                  seed=2), path)
    for key, value in cls.state_dict().items():
        if key.startswith("classifier.6"):
            assert box.state_dict()[key].shape != value.shape
        else:
            assert torch.equal(box.state_dict()[key], value), key
    other = save_weights(vggnet.build_model("A", num_classes=5, head="fc", width=0.0625), tmp_path / "a.safetensors")
    with pytest.raises(ConfigError, match="not this net's classification form"):
        init_from_classifier(vggnet.build_model("D", num_classes=5, head="fc", width=0.0625, box_head="scr"), other)


def test_paper_loc_config_is_d_with_a_4000_d_per_class_box_layer(tmp_path):
    from pathlib import Path

    cfg = config.load(Path(__file__).resolve().parents[2] / "configs/paper/D-loc.yaml")
    assert (cfg.model.name, cfg.model.box_head, cfg.loc.finetune, cfg.data.scale) == ("D", "pcr", "all", [256])
    with torch.device("meta"):
        pcr = vggnet.build_model("D", box_head="pcr", head=cfg.model.head, init=None)
        scr = vggnet.build_model("D", box_head="scr", head=cfg.model.head, init=None)
    assert pcr.classifier[6].out_channels == 4000 and scr.classifier[6].out_channels == 4  # Appendix A
    # the fc-head classification D (configs/paper/D.yaml) initialises this conv-head box net
    small = dict(num_classes=5, width=0.0625)
    path = save_weights(vggnet.build_model("D", head="fc", **small), tmp_path / "d.safetensors")
    box = init_from_classifier(vggnet.build_model("D", head="conv", box_head="pcr", **small), path)
    assert box.classifier[0].weight.shape[-2:] == (7, 7)


def test_a_training_view_moves_clips_and_mirrors_the_box():
    cfg = config.load(None, ["data.image_size=32", "data.scale=[48]"])
    image = torch.zeros(1, 64, 64, dtype=torch.uint8)
    box = torch.tensor([0.0, 8.0, 32.0, 40.0])  # corners in the 64 px image
    crop, centre = _view(image, box, cfg, False, torch.Generator().manual_seed(0))
    # rescaled to 48: box (0, 6, 24, 30); the centre 32 crop starts at (8, 8): (0, 0, 16, 22) after clipping
    assert crop.shape == (1, 32, 32)
    torch.testing.assert_close(centre, torch.tensor([8 / 32, 11 / 32, 16 / 32, 22 / 32]))


def test_config_rejects_an_unknown_box_head_and_finetune_mode():
    with pytest.raises(ConfigError, match="model.box_head='xyz' is not one of scr, pcr"):
        config.load(None, ["model.box_head=xyz"])
    with pytest.raises(ConfigError, match="loc.finetune='conv' is not one of all, fc"):
        config.load(None, ["loc.finetune=conv"])


@pytest.mark.parametrize("given", ["--set", "a config file"])
def test_cli_unknown_box_head_is_one_line_exit_2(given, tmp_path, capsys):
    from vggnet.cli import main

    if given == "--set":
        args = ["--set", "model.box_head=xyz"]
    else:
        (tmp_path / "loc.yaml").write_text("model: {name: D, box_head: xyz}\nloc: {finetune: all}\n")
        args = ["-c", str(tmp_path / "loc.yaml")]
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.box_head='xyz' is not one of scr, pcr" in err[0]
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_fit_localisation_end_to_end(tmp_path, one_thread, capsys):
    pytest.importorskip("torchvision")
    from vggnet.train.trainer import fit

    common = ["data.name=fashion-mnist-loc", "data.image_size=48", "data.num_train=160", "data.num_test=24",
              "model.name=A", "model.width=0.0625", "model.head=fc", "train.batch_size=16", "train.epochs=1",
              "train.progress=false", "train.health_every=0", "train.amp=false", "eval.protocols=[centre]"]
    cls = fit(config.load(None, common), tmp_path / "cls")
    from vggnet.cli import main

    loc = [*common, "model.box_head=pcr", "loc.finetune=fc", "train.lr=0.01",
           f"loc.classifier={tmp_path / 'cls' / 'model.safetensors'}", "eval.scales=[40,48]"]
    assert main(["train", *[a for kv in loc for a in ("--set", kv)], "--out", str(tmp_path / "loc")]) == 0
    assert "test localisation error (24 images, IoU > 0.5): gt_class" in capsys.readouterr().out
    evaluation = json.loads((tmp_path / "loc" / "eval.json").read_text())
    assert set(evaluation["protocols"]) == {"gt_class", "classifier", "whole_image", "centre_box"}
    assert evaluation["protocols"]["gt_class"]["n"] == 24 and cls.test
    assert (tmp_path / "loc" / "boxes.png").stat().st_size > 0 and (tmp_path / "loc" / "report.html").is_file()
    assert "Localisation" in (tmp_path / "loc" / "report.html").read_text()
    trained = vggnet.load_weights(tmp_path / "loc" / "model.safetensors")
    first = vggnet.load_weights(tmp_path / "cls" / "model.safetensors")
    assert torch.equal(trained.features[0].weight, first.features[0].weight)  # fc only: the convs stayed
    metrics = (tmp_path / "loc" / "metrics.jsonl").read_text().splitlines()
    assert metrics and "val_top1" in json.loads(metrics[0])
