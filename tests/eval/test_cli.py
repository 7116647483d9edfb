"""`vggnet eval` and `vggnet predict` on a hand-written run directory: tables, eval.json, bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from vggnet.cli import main
from vggnet.model.vgg import build_model
from vggnet import config

from .conftest import write_run


def test_eval_writes_eval_json_and_prints_a_table(run_dir, capsys):
    assert main(["eval", str(run_dir), "--protocol", "centre", "dense", "--limit", "6", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "top-1 err (%)" in out and "top-5 err (%)" in out
    lines = out.splitlines()
    assert any(line.startswith("centre") for line in lines) and any(line.startswith("dense") for line in lines)
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["protocols"]["centre"]["n"] == 6
    assert {"top1_error", "top5_error", "n"} <= set(result["protocols"]["dense"])
    assert len(result["confusion"]) == 10 and len(result["classes"]) == 10
    # a later run of another protocol keeps the earlier rows
    assert main(["eval", str(run_dir), "--protocol", "multi_crop", "--scales", "32", "--limit", "6"]) == 0
    result = json.loads((run_dir / "eval.json").read_text())
    assert set(result["protocols"]) == {"centre", "dense", "multi_crop"}


def test_eval_of_a_weights_file_and_an_ensemble(run_dir, tmp_path, capsys):
    out = tmp_path / "w.json"
    assert main(["eval", str(run_dir / "model.safetensors"), "--data", "synthetic", "--limit", "8", "--json",
                 "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocols"]["centre"]["n"] == 8 and json.loads(out.read_text())["n"] == 8
    assert main(["eval", str(run_dir), "--limit", "8", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run_dir), str(run_dir / "model.safetensors"), "--protocol", "ensemble", "centre",
                 "--limit", "8", "--out", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert list(result["protocols"]) == ["ensemble:centre"]
    assert result["protocols"]["ensemble:centre"] == {**printed["protocols"]["centre"],
                                                      "seconds": result["protocols"]["ensemble:centre"]["seconds"]}


def test_unknown_protocol_lists_the_valid_ones(run_dir, capsys):
    assert main(["eval", str(run_dir), "--protocol", "densest"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown protocol 'densest'" in err and "multi_crop" in err and "fusion" in err


def test_weights_of_another_config_name_both(run_dir, capsys):
    cfg = config.load(run_dir / "config.yaml", ["model.name=B"])
    config.dump(cfg, run_dir / "config.yaml")
    assert main(["eval", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "name=A" in err and "name=B" in err


def test_missing_run_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not found: give a file, a run directory, or torchvision:NAME" in capsys.readouterr().err


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    gray = tmp_path / "gray.png"
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(gray)
    rgb = tmp_path / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (70, 50, 3), dtype=np.uint8), mode="RGB").save(rgb)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    return gray, rgb, bad


def test_predict_prints_top5_and_skips_non_images(run_dir, image_files, capsys):
    gray, rgb, bad = image_files
    assert main(["predict", str(run_dir / "model.safetensors"), str(gray), str(bad), str(rgb), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [p["path"] for p in result["predictions"]] == [str(gray), str(rgb)]
    for p in result["predictions"]:
        probs = [t["probability"] for t in p["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(t["label"].startswith("class") for t in p["top"])
    assert result["skipped"][0]["path"] == str(bad)
    assert "skipped" in captured.err and "notes.png" in captured.err
    assert main(["predict", str(run_dir), str(rgb), "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(rgb) and len(out) == 4 and out[1].strip().startswith("1. class")


def test_predict_with_no_readable_image_fails_in_one_line(run_dir, image_files, capsys):
    assert main(["predict", str(run_dir), str(image_files[2])]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("vggnet predict: error: none of the 1 files")


def test_predict_on_a_gray_model_takes_rgb_photos(tmp_path, cfg, stats, ds, image_files, capsys):
    gray_model = build_model("A", num_classes=10, width=0.125, head="gap", batch_norm=True, in_channels=1, seed=2)
    run = write_run(tmp_path / "gray-run", cfg, stats, ds, gray_model)
    assert main(["predict", str(run), str(image_files[1]), str(image_files[0]), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["predictions"]) == 2


def test_a_quick_eval_adds_rows_and_the_report_names_each_figures_protocol(run_dir, capsys):
    """The issue's sequence: full evaluation, `eval --limit`, `eval --protocol dense multi_scale`,
    then `report`: the full rows stay, and every table and figure says where it comes from."""
    import re

    assert main(["eval", str(run_dir), "--protocol", "centre"]) == 0
    full = json.loads((run_dir / "eval.json").read_text())["n"]
    assert main(["eval", str(run_dir), "--protocol", "centre", "--limit", "5"]) == 0
    data = json.loads((run_dir / "eval.json").read_text())
    assert data["n"] == full and data["protocols"]["centre"]["n"] == full
    assert sorted(e["images"] for e in data["entries"]) == sorted([full, 5])
    assert main(["eval", str(run_dir), "--protocol", "dense", "multi_scale", "--scales", "32", "40"]) == 0
    assert main(["report", str(run_dir)]) == 0
    html = re.sub(r'src="data:[^"]+"', "", (run_dir / "report.html").read_text())
    capsys.readouterr()
    analysis = json.loads((run_dir / "eval.json").read_text())["analysis_protocol"]
    assert f"test top-1 error % (centre, {full} images)" in html
    assert f"<h2>Confusion matrix</h2><p>from the {analysis} protocol, {full} test images" in html
    assert html.count(f"from the {analysis} protocol, {full} test images") >= 2  # analysis, per class too
