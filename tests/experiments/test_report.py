import base64
import re
from html.parser import HTMLParser

import pytest

from vggnet.errors import ConfigError
from vggnet.experiments.report import render
from vggnet.report.run import render_run


class Tags(HTMLParser):
    """Collects tags, their attributes and the table classes."""

    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        if tag == "table":
            self.tables.append(attrs.get("class", ""))

    def handle_data(self, data):
        self.text.append(data)


def parse(path):
    tags = Tags()
    tags.feed(path.read_text())
    return tags


def test_run_report_has_curves_confusion_protocols_analysis_and_health(run_dir):
    path = render_run(run_dir)
    assert path == run_dir / "report.html"
    tags = parse(path)
    assert [i["alt"] for i in tags.imgs] == ["learning curves", "confusion matrix"]
    for img in tags.imgs:  # embedded, decodable PNGs: no file or network needed
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"protocols", "per-class", "events", "summary"} <= set(tags.tables)
    text = " ".join(tags.text)
    assert "12.30" in text and "1.10" in text  # centre top-1 / top-5 error in %
    assert "takes 30% of all predictions" in text  # collapse warning shown
    assert "38% of ReLUs" in text and "use model.batch_norm=true" in text  # health event with its fix
    assert "Shirt" in text and "hand-written" in text
    assert not re.search(r"(src|href)=\"https?://", path.read_text())


def test_run_report_without_eval_still_renders(make_run, tmp_path):
    run_dir = make_run(tmp_path / "r", with_eval=False)
    tags = parse(render_run(run_dir))
    assert [i["alt"] for i in tags.imgs] == ["learning curves"]
    assert "No eval.json yet" in " ".join(tags.text)


def test_empty_dir_renders_and_missing_dir_is_a_config_error(tmp_path):
    assert render(tmp_path).is_file()
    with pytest.raises(ConfigError, match="run directory"):
        render_run(tmp_path / "nope")


def test_study_plot_puts_runs_that_never_learned_off_the_scale(monkeypatch):
    from vggnet.experiments import report

    seen = {}
    monkeypatch.setattr(report.plots, "cell_points", lambda cells, ceiling=None: seen.update(ceiling=ceiling) or b"")

    def row(name, seed, acc):
        return {"key": {"model.name": name}, "seed": seed, "status": "done", "test_top1": acc, "num_classes": 10,
                "wall_s": 1.0}

    learned = [row("A", s, a) for s, a in enumerate((0.91, 0.92, 0.90))]
    report.study_plot({}, learned)
    assert seen["ceiling"] is None  # every run learned: the axis spans them all
    report.study_plot({}, learned + [row("B-5x5", 0, 0.093)])
    assert 10.0 < seen["ceiling"] < 90.7  # the learned cells fill the axis, B-5x5's 90.7% sits above it


def test_study_plot_labels_name_only_the_axes_that_vary(monkeypatch):
    from vggnet.experiments import report

    seen = {}
    monkeypatch.setattr(report.plots, "cell_points", lambda cells, ceiling=None: seen.update(cells=cells) or b"")
    rows = [{"key": {"model.name": name, "norm": norm, "train.batch_size": 128}, "seed": 0, "status": "done",
             "test_top1": 0.9, "num_classes": 10, "wall_s": 1.0} for name in ("A", "E") for norm in ("none", "bn")]
    report.study_plot({}, rows)
    assert [c[0] for c in seen["cells"]] == ["A, none", "A, bn", "E, none", "E, bn"]  # batch 128 is in every cell
    report.study_plot({}, rows[:1])
    assert seen["cells"][0][0] == "A, none, 128"  # a single cell keeps its whole key
