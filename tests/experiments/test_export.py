"""Raw results: a sweep exported to JSONL recomputes the report's tables exactly, and every
export committed under docs/results/ recomputes the tables printed in docs/RESULTS.md."""

import json
from pathlib import Path

import pytest
import yaml

from vggnet.errors import ConfigError

from vggnet.experiments.export import compare, export_sweep, main, read_export, tables
from vggnet.experiments.report import protocols_markdown, sweep_markdown
from vggnet.experiments.spec import load_spec
from vggnet.experiments.sweep import run_sweep
from vggnet.experiments.verdicts import verdicts_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_export_recomputes_the_sweep_tables(tmp_path, fake_train, capsys):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "base": {"data": {"name": "synthetic", "num_classes": 4}, "train": {"epochs": 1}},
        "grid": {"model.name": ["A", "B"], "train.lr": [0.1, 0.666]}, "seeds": [0, 1, 2],
        "out": str(tmp_path / "sweep"), "study": "fake",
        "hypotheses": [{"claim": "dense beats centre", "a": {"protocol": "dense"}, "b": {"protocol": "centre"},
                        "expect": "lower", "test": "sign"}]}))
    spec = load_spec(spec_path)
    run_sweep(spec, jobs=2, command=fake_train, log=lambda _: None)  # lr 0.666 cells fail
    path = export_sweep(spec.out, tmp_path / "fake.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0]["export"] == "vggnet-sweep" and lines[0]["spec"]["study"] == "fake"
    runs = lines[1:]
    assert len(runs) == 12 and {r["status"] for r in runs} == {"done", "failed"}
    done = next(r for r in runs if r["status"] == "done" and r["seed"] == 1)
    assert done["protocols"]["centre"]["top1_error"] == pytest.approx(21.0)  # fake_train: 0.2 + 0.01 x seed
    assert (done["best_epoch"], done["steps"], done["never_learned"]) == (3, 30, False)
    assert next(r for r in runs if r["status"] == "done" and r["seed"] == 2)["never_learned"]
    recomputed = tables(path)
    assert recomputed == "\n".join([sweep_markdown(spec.out), protocols_markdown(spec.out),
                                    verdicts_markdown(spec.out)])
    assert "(+3 failed)" in recomputed and "**reproduces**" in recomputed
    assert main(["--tables", str(path)]) == 0 and capsys.readouterr().out == recomputed
    with pytest.raises(ConfigError, match="not a vggnet sweep export"):
        read_export(spec_path)


COMMITTED = sorted((DOCS / "results").glob("*.jsonl"))


@pytest.mark.parametrize("path", COMMITTED or [None], ids=[p.name for p in COMMITTED] or ["none"])
def test_committed_exports_recompute_the_tables_in_results_md(path):
    if path is None:
        pytest.skip("no export committed under docs/results/ yet")
    document = (DOCS / "RESULTS.md").read_text()
    cells_table = tables(path).split("\n\n")[0]
    assert cells_table.strip() in document, f"the cells table recomputed from {path.name} is not in RESULTS.md"


SCALES = sorted(p for p in COMMITTED if p.name.endswith("_small.jsonl")
                and p.with_name(p.name.replace("_small", "_medium")).exists())


@pytest.mark.parametrize("small", SCALES or [None], ids=[p.name for p in SCALES] or ["none"])
def test_committed_small_and_medium_verdicts_side_by_side_are_in_results_md(small):
    if small is None:
        pytest.skip("no study has both a small and a medium export committed yet")
    side_by_side = compare([small, small.with_name(small.name.replace("_small", "_medium"))])
    assert side_by_side.strip() in (DOCS / "RESULTS.md").read_text(), \
        f"the small-vs-medium verdicts recomputed from {small.name} are not in RESULTS.md"


def test_study_plot_from_an_export(tmp_path, fake_train):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": {"data": {"name": "synthetic", "num_classes": 4},
                                                  "train": {"epochs": 1}},
                                         "grid": {"model.name": ["A", "B"]}, "seeds": [0, 1],
                                         "out": str(tmp_path / "sweep")}))
    spec = load_spec(spec_path)
    run_sweep(spec, command=fake_train, log=lambda _: None)
    path = export_sweep(spec.out, tmp_path / "s.jsonl")
    png = tmp_path / "s.png"
    assert main(["--tables", str(path), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and len(png.read_bytes()) > 2000


def test_a_study_split_across_sittings_merges_into_one_export(tmp_path, fake_train):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({"base": {"data": {"name": "synthetic", "num_classes": 4},
                                                  "train": {"epochs": 1}},
                                         "grid": {"model.name": ["A", "B"]}, "seeds": [0, 1, 2], "study": "fake",
                                         "out": str(tmp_path / "whole")}))
    whole = load_spec(spec_path)
    run_sweep(whole, command=fake_train, log=lambda _: None)
    expected = export_sweep(whole.out, tmp_path / "whole.jsonl").read_text()

    dest = tmp_path / "sittings.jsonl"
    for n, seeds in enumerate(([0, 2], [1], [2])):  # the last sitting reruns seed 2: its figures replace the first's
        sitting = load_spec(spec_path, out=tmp_path / f"sitting{n}", only_seeds=seeds)
        assert sitting.seeds == seeds
        run_sweep(sitting, command=fake_train, log=lambda _: None)
        export_sweep(sitting.out, dest)

    def without_wall(text):
        return [{k: v for k, v in json.loads(x).items() if k not in ("wall_s", "images_per_s")}
                for x in text.splitlines()]

    assert without_wall(dest.read_text()) == without_wall(expected)
    # a sitting stopped before some cells ran: its pending runs do not replace earlier figures
    from vggnet.experiments.index import Index

    stopped = load_spec(spec_path, out=tmp_path / "stopped", only_seeds=[1])
    run_sweep(stopped, command=fake_train, log=lambda _: None)
    index = Index(stopped.out / "sweep.db")
    index.update(index.rows()[0]["id"], status="pending")
    index.close()
    export_sweep(stopped.out, dest)
    assert without_wall(dest.read_text()) == without_wall(expected)
    assert tables(dest).split("\n\n")[0] == tables(tmp_path / "whole.jsonl").split("\n\n")[0]

    with pytest.raises(ConfigError, match=r"seed\(s\) 7 not among"):
        load_spec(spec_path, only_seeds=[7])
    for name, change in (("study", {"study": "other"}), ("set", {"set": {"train.lr": 0.05}})):
        other = yaml.safe_load(spec_path.read_text()) | change | {"out": str(tmp_path / name)}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(other))
        run_sweep(load_spec(tmp_path / f"{name}.yaml", only_seeds=[0]), command=fake_train, log=lambda _: None)
        with pytest.raises(ConfigError, match=rf"holds another sweep \(its {name} differ"):
            export_sweep(tmp_path / name, dest)
    with pytest.raises(ConfigError, match="not a sweep directory"):
        export_sweep(tmp_path / "no-such-sweep", tmp_path / "new.jsonl")
    assert not (tmp_path / "new.jsonl").exists()
    (tmp_path / "notes.txt").write_text("not an export\n")
    with pytest.raises(ConfigError, match="is not a vggnet sweep export"):
        export_sweep(tmp_path / "study", tmp_path / "notes.txt")


def _export(path, budget, errors, *, study="fake"):
    """A hand-written export: cells A and B, one run per (cell, seed) with these centre errors (%)."""
    spec = {"study": study, "budget": budget, "grid": {"model.name": ["A", "B"]},
            "hypotheses": [{"claim": "B beats A", "source": "paper", "a": {"model.name": "B"},
                            "b": {"model.name": "A"}, "expect": "lower", "test": "sign"},
                           {"claim": "only at medium", "a": {"model.name": "B"}, "b": {"model.name": "A"},
                            "expect": "same", "threshold": 50.0, "budgets": ["medium"]}]}
    lines = [{"export": "vggnet-sweep", "version": 1, "spec": spec}]
    lines += [{"run": f"{name}/seed{seed}", "cell": {"model.name": name}, "seed": seed, "status": "done",
               "protocols": {"centre": {"top1_error": e, "top5_error": 1.0}}, "num_classes": 10, "wall_s": 1.0,
               "epochs": 1} for name, per_seed in errors.items() for seed, e in enumerate(per_seed)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_compare_puts_a_studys_budgets_side_by_side(tmp_path, capsys):
    small = _export(tmp_path / "small.jsonl", "small", {"A": [20, 21, 22, 23, 24], "B": [30, 31, 32, 33, 34]})
    medium = _export(tmp_path / "medium.jsonl", "medium", {"A": [20, 21, 22, 23, 24], "B": [10, 11, 12, 13, 14]})
    assert main(["--compare", str(small), str(medium)]) == 0
    head, rule, beats, only = capsys.readouterr().out.splitlines()
    assert head.split(" | ")[2:5] == ["small: n", "mean a - b [interval]", "verdict"]
    assert beats.startswith("| B beats A | paper | 5 | +10.0 ") and beats.endswith(
        "| **does not** | 5 | -10.0 [-10.0, -10.0] | **reproduces** | yes |")
    assert only.startswith("| only at medium |  | – | – | – | 5 |") and only.endswith("| – |")
    level = _export(tmp_path / "level.jsonl", "medium", {"A": [20, 21, 22, 23, 24], "B": [30, 31, 32, 33, 34]})
    assert compare([small, level]).splitlines()[2].endswith("| **does not** | no |")

    other = _export(tmp_path / "other.jsonl", "medium", {"A": [1], "B": [2]}, study="init")
    assert main(["--compare", str(small), str(other)]) == 2
    assert "one study at several budgets; these hold fake, init" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--compare", str(small)])
    with pytest.raises(SystemExit):
        main(["--tables", str(small), str(medium)])
