"""The default path end to end: `vggnet sweep` with real `vggnet train` subprocesses on a tiny
synthetic set, the index, the printed tables, the sweep report, and a Table-6 ensemble."""

import json

import pytest
import yaml

from vggnet.cli import main
from vggnet.experiments.index import read_rows
from vggnet.experiments.spec import load_spec

pytestmark = pytest.mark.slow


def test_real_cells_train_index_report_and_ensemble(tmp_path, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "base": {"data": {"name": "synthetic", "num_classes": 4, "num_train": 128, "num_test": 64},
                 "model": {"width": 0.125}, "train": {"epochs": 1, "batch_size": 32, "amp": False},
                 "eval": {"protocols": ["centre", "dense"]}, "device": "cpu"},
        "grid": {"model.name": ["A", "B"]}, "seeds": [0], "out": str(tmp_path / "sweep"),
        "report": {"paper": True,
                   "ensembles": [{"name": "A+B", "members": [{"model.name": "A"}, {"model.name": "B"}],
                                  "protocols": ["centre"]}]},
    }, sort_keys=False))
    assert main(["sweep", str(spec_path), "--jobs", "2"]) == 0
    spec = load_spec(spec_path)
    rows = read_rows(spec.out)
    assert [r["status"] for r in rows] == ["done", "done"], [r["error"] for r in rows]
    for row in rows:
        assert 0 <= row["test_top1"] <= 1 and row["epochs"] == 1 and row["num_classes"] == 4
        assert (spec.out / "cells" / row["id"] / "report.html").is_file()  # the trainer renders it
    out = capsys.readouterr().out
    assert "| A | 1 | " in out and "| 29.6 / 10.4 |" in out  # the cell table, next to Table 3
    assert "| cell | n | centre | dense |" in out  # the protocols table
    assert out.rstrip().endswith(f"report: {spec.out / 'report.html'}")
    ensembles = json.loads((spec.out / "ensembles.json").read_text())
    assert list(ensembles["A+B"][0]["protocols"]) == ["ensemble:centre"]
    html = (spec.out / "report.html").read_text()
    assert 'class="ensembles"' in html and 'href="cells/name=A/seed0/report.html"' in html
