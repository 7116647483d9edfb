"""The default path end to end: real `vggnet train` subprocesses on a tiny synthetic set, the
index, the sweep report, and a Table-6 ensemble over two cells."""

import json

import pytest
import yaml

from vggnet.experiments.index import read_rows
from vggnet.experiments.report import render_sweep
from vggnet.experiments.spec import load_spec
from vggnet.experiments.studies import run_ensembles
from vggnet.experiments.sweep import run_sweep

pytestmark = pytest.mark.slow


def test_real_cells_train_index_report_and_ensemble(tmp_path):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "base": {"data": {"name": "synthetic", "num_classes": 4, "num_train": 128, "num_test": 64},
                 "model": {"width": 0.125}, "train": {"epochs": 1, "batch_size": 32, "amp": False},
                 "device": "cpu"},
        "grid": {"model.name": ["A", "B"]}, "seeds": [0], "out": str(tmp_path / "sweep"),
        "report": {"ensembles": [{"name": "A+B", "members": [{"model.name": "A"}, {"model.name": "B"}],
                                  "protocols": ["centre"]}]},
    }, sort_keys=False))
    spec = load_spec(spec_path)
    result = run_sweep(spec, jobs=2, log=lambda _: None)
    assert result.counts["done"] == 2, [r["error"] for r in read_rows(spec.out)]
    for row in read_rows(spec.out):
        assert 0 <= row["test_top1"] <= 1 and row["epochs"] == 1 and row["num_classes"] == 4
        assert (spec.out / "cells" / row["id"] / "report.html").is_file()  # the trainer renders it
    ensembles = json.loads(run_ensembles(spec.out).read_text())
    assert list(ensembles["A+B"][0]["protocols"]) == ["ensemble:centre"]
    html = render_sweep(spec.out).read_text()
    assert 'class="ensembles"' in html and 'href="cells/name=A/seed0/report.html"' in html
