import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vggnet.errors import ConfigError
from vggnet.experiments.index import Index, read_rows
from vggnet.experiments.report import protocols_markdown, render_sweep, sweep_markdown
from vggnet.experiments.spec import expand, load_spec
from vggnet.experiments.summary import cell_stats, never_learned
from vggnet.experiments.sweep import run_sweep

BASE = {"data": {"name": "synthetic", "num_classes": 4}, "train": {"epochs": 1}}


def write_spec(tmp_path: Path, **spec) -> Path:
    data = {"base": BASE, "out": str(tmp_path / "sweep"), **spec}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_grid_named_axes_exclude_seeds_and_budget(tmp_path):
    path = write_spec(
        tmp_path,
        grid={"model.name": ["A", "E"],
              "norm": {"none": {"model.batch_norm": False, "data.normalize": "none"},
                       "bn": {"model.batch_norm": True, "data.normalize": "none"}}},
        exclude=[{"model.name": "E", "norm": "none"}],
        seeds=[0, 1],
        budgets={"small": {"set": {"model.width": 0.25}, "grid": {"model.name": ["A"]}, "seeds": [5]},
                 "medium": {"exclude": [{"model.name": "E"}]}},
    )
    cells = expand(load_spec(path))
    assert [(c.key["model.name"], c.key["norm"], c.seed) for c in cells] == [  # seed-major
        ("A", "none", 0), ("A", "bn", 0), ("E", "bn", 0), ("A", "none", 1), ("A", "bn", 1), ("E", "bn", 1)]
    assert cells[1].overrides == {"model.name": "A", "model.batch_norm": True, "data.normalize": "none", "seed": 0}
    assert cells[1].dir == tmp_path / "sweep" / "cells" / "name=A,norm=bn" / "seed0"
    small = load_spec(path, budget="small")
    assert small.out == tmp_path / "sweep-small"
    assert [(c.key["model.name"], c.seed, c.overrides["model.width"]) for c in expand(small)] == [
        ("A", 5, 0.25), ("A", 5, 0.25)]
    medium = expand(load_spec(path, budget="medium"))  # a budget's exclude adds to the spec's
    assert [(c.key["model.name"], c.key["norm"], c.seed) for c in medium] == [
        ("A", "none", 0), ("A", "bn", 0), ("A", "none", 1), ("A", "bn", 1)]


def test_bad_specs_say_what_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="no budget 'huge'"):
        load_spec(write_spec(tmp_path, grid={"model.name": ["A"]}), budget="huge")
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        load_spec(write_spec(tmp_path, grid={"train.lrr": [0.1]}))
    with pytest.raises(ConfigError, match=r"cell name=Z/seed0: unknown VGG config 'Z'"):
        load_spec(write_spec(tmp_path, grid={"model.name": ["Z"]}))
    with pytest.raises(ConfigError, match="unknown spec keys"):
        load_spec(write_spec(tmp_path, gird={"model.name": ["A"]}))


def test_sweep_records_results_and_failures_in_sqlite(tmp_path, fake_train):
    spec = load_spec(write_spec(tmp_path, grid={"train.lr": [0.1, 0.666]}, seeds=[0, 1, 2]))
    result = run_sweep(spec, jobs=2, command=fake_train, log=lambda _: None)
    assert result.counts == {"pending": 0, "running": 0, "done": 3, "failed": 3}
    rows = {(r["key"]["train.lr"], r["seed"]): r for r in read_rows(spec.out)}
    ok, bad = rows[(0.1, 1)], rows[(0.666, 0)]
    assert ok["status"] == "done" and ok["test_top1"] == pytest.approx(0.79)
    assert ok["best_val_top1"] == pytest.approx(0.75) and ok["epochs"] == 3 and ok["num_classes"] == 4
    assert set(ok["protocols"]) == {"centre", "dense"} and ok["attempts"] == 1 and ok["wall_s"] > 0
    assert bad["status"] == "failed" and "loss became nan at step 12" in bad["error"]
    stats = cell_stats(read_rows(spec.out))
    good = next(s for s in stats if s["key"]["train.lr"] == 0.1)
    assert good["n"] == 3 and good["min"] == pytest.approx(0.1) and good["max"] == pytest.approx(0.8)
    assert good["never_learned"] == pytest.approx(1 / 3)  # seed 2 sits at 10% on 4 classes (chance 25%)
    failed = next(s for s in stats if s["key"]["train.lr"] == 0.666)
    assert failed["n"] == 0 and failed["failed"] == 3 and failed["mean"] is None
    # A second call has nothing left to do; --retry-failed would rerun the failures only.
    assert run_sweep(spec, command=fake_train, log=lambda _: None).ran == 0
    assert run_sweep(spec, command=fake_train, retry_failed=True, log=lambda _: None).ran == 3


def test_a_later_sitting_counts_only_its_own_cells(tmp_path, fake_train):
    path = write_spec(tmp_path, grid={"model.name": ["A", "B"]}, seeds=[0, 1])
    run_sweep(load_spec(path, only_seeds=[0]), command=fake_train, log=lambda _: None)
    lines = []
    run_sweep(load_spec(path, only_seeds=[1]), command=fake_train, log=lines.append)
    assert [x.split(" start")[0] for x in lines if " start " in x] == ["[1/2]", "[2/2]"]


def test_killed_sweep_reruns_only_unfinished_cells(tmp_path, fake_train):
    """A sweep stopped by SIGTERM mid-cell (epochs=99 sleeps) marks that cell pending; the
    rerun runs only it and leaves finished cells alone."""
    path = write_spec(tmp_path, grid={"train.epochs": [1, 99]}, seeds=[0])
    code = (f"from vggnet.experiments.spec import load_spec; from vggnet.experiments.sweep import run_sweep; "
            f"import signal; signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())); "
            f"run_sweep(load_spec({str(path)!r}), command={list(fake_train)!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slow = tmp_path / "sweep" / "cells" / "epochs=99" / "seed0" / "calls.txt"
    for _ in range(600):
        if slow.is_file():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    rows = {r["key"]["train.epochs"]: r for r in read_rows(tmp_path / "sweep")}
    assert rows[1]["status"] == "done" and rows[99]["status"] == "pending"
    assert rows[99]["wall_s"] > 0  # the interrupted part's time counts toward the cell's wall time
    # The rerun (the fake sleeps only on its first call) runs the interrupted cell only.
    result = run_sweep(load_spec(path), command=fake_train, log=lambda _: None)
    assert result.ran == 1 and result.counts["done"] == 2
    assert len((tmp_path / "sweep" / "cells" / "epochs=1" / "seed0" / "calls.txt").read_text().splitlines()) == 1
    assert len(slow.read_text().splitlines()) == 2


def test_stale_running_rows_are_retried(tmp_path, fake_train):
    spec = load_spec(write_spec(tmp_path, grid={"train.lr": [0.1]}, seeds=[0, 1]))
    run_sweep(spec, command=fake_train, log=lambda _: None)
    dead = subprocess.Popen(["true"])
    dead.wait()
    index = Index(spec.out / "sweep.db")
    index.update("lr=0.1/seed1", status="running", pid=dead.pid)
    index.close()
    assert run_sweep(spec, command=fake_train, log=lambda _: None).ran == 1
    assert read_rows(spec.out)[1]["attempts"] == 2


def test_cells_that_point_into_another_cell_run_after_it(tmp_path, fake_train):
    path = write_spec(
        tmp_path,
        grid={"model.name": ["A", "D"],
              "init": {"kaiming": {"model.init": "kaiming"},
                       "from_a": {"model.pre_initialise": "{out}/cells/name=A,init=kaiming,lr={train.lr}/seed{seed}/model.safetensors"}},
              "train.lr": [0.666]},
        exclude=[{"model.name": "A", "init": "from_a"}], seeds=[0])
    spec = load_spec(path)
    cells = {c.id: c for c in expand(spec)}
    assert cells["name=D,init=from_a,lr=0.666/seed0"].depends == ["name=A,init=kaiming,lr=0.666/seed0"]
    run_sweep(spec, command=fake_train, log=lambda _: None)
    rows = {r["id"]: r for r in read_rows(spec.out)}
    assert rows["name=D,init=from_a,lr=0.666/seed0"]["error"].startswith("dependency failed")


def test_sweep_report_tables_and_box_plot(tmp_path, fake_train):
    spec = load_spec(write_spec(tmp_path, grid={"model.name": ["A", "B"], "train.batch_size": [8, 32]},
                                seeds=[0, 1, 2], report={"paper": True}))
    run_sweep(spec, command=fake_train, log=lambda _: None)
    html = render_sweep(spec.out).read_text()
    assert html.count("data:image/png;base64,") == 4
    assert 'alt="accuracy box plot"' in html and 'alt="validation curves"' in html
    assert 'alt="error per cell and seed"' in html
    assert 'alt="confusion matrices"' in html and "Classes in order: c0, c1, c2, c3" in html
    assert 'class="cells"' in html and 'class="paper"' in html and 'class="protocols"' in html
    assert "80.0" in html and "33%" in html  # max accuracy and the never-learned share
    assert "29.6 / 10.4" in html  # paper Table 3, config A


def test_markdown_tables_for_the_results_page(tmp_path, fake_train):
    spec = load_spec(write_spec(tmp_path, grid={"model.name": ["A", "B"]}, seeds=[0, 1, 2], report={"paper": True}))
    run_sweep(spec, command=fake_train, log=lambda _: None)
    plot = tmp_path / "box.png"
    cells = sweep_markdown(spec.out, plot).splitlines()
    assert cells[0] == ("| name | n | test top-1 % (mean ± std) | min | max | never learned "
                        "| Table 3's protocol: dense top-1 err % | paper, Table 3 (ImageNet top-1 / top-5 err %) |")
    # fake_train: seeds 0, 1 reach 80% and 79%, seed 2 stays at 10% (never learned); Table 3 is dense
    assert cells[2] == "| A | 3 | 56.3 ± 40.1 | 10.0 | 80.0 | 1/3 | 42.7 ± 40.1 | 29.6 / 10.4 |"
    assert cells[3].endswith("| 28.7 / 9.9 |")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = protocols_markdown(spec.out).splitlines()
    assert table[0] == "| cell | n | centre | dense |"
    assert table[2] == "| A | 3 | 43.7 ± 40.1 | 42.7 ± 40.1 |"
    assert table[-1] == "| **runs below centre** |  | – | 6/6 |"  # dense is 1 point lower in every run


def test_never_learned_margin():
    assert never_learned(0.149, 10) and not never_learned(0.151, 10)
    assert not never_learned(None, 10) and not never_learned(0.1, None)


def test_changing_the_spec_under_finished_cells_is_refused(tmp_path, fake_train):
    path = write_spec(tmp_path, grid={"train.lr": [0.1]}, seeds=[0])
    run_sweep(load_spec(path), command=fake_train, log=lambda _: None)
    changed = load_spec(path)
    changed.overrides["train.batch_size"] = 16
    with pytest.raises(ConfigError, match="spec changed for cell lr=0.1/seed0"):
        run_sweep(changed, command=fake_train, log=lambda _: None)
