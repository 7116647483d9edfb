"""Pre-registered hypotheses: checked when the spec loads, decided from the index by the test
named in the spec (vggnet.experiments.verdicts)."""

from pathlib import Path

import pytest
import yaml

from vggnet.cli import main
from vggnet.errors import ConfigError
from vggnet.experiments.report import render_sweep
from vggnet.experiments.spec import expand, load_spec
from vggnet.experiments.sweep import run_sweep
from vggnet.experiments.verdicts import (bootstrap_interval, decide, differences, planned_pairs, sign_test,
                                         sweep_verdicts, undecidable_hypotheses, verdicts_markdown)

BASE = {"data": {"name": "synthetic", "num_classes": 4}, "train": {"epochs": 1}}


def row(seed, key, centre, dense=None, status="done"):
    figures = {"centre": {"top1_error": centre, "top5_error": centre / 4}}
    if dense is not None:
        figures["dense"] = {"top1_error": dense, "top5_error": dense / 4}
    return {"seed": seed, "key": key, "status": status, "num_classes": 10, "protocols": figures}


def test_sign_test_is_the_exact_binomial_tail():
    assert sign_test(6, 6) == pytest.approx(1 / 64)
    assert sign_test(5, 6) == pytest.approx(7 / 64)
    assert sign_test(0, 4) == 1.0 and sign_test(0, 0) == 1.0


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = [1.0, 2.0, 3.0, 10.0]
    lo, hi = bootstrap_interval(values)
    assert (lo, hi) == bootstrap_interval(values)
    assert 1.0 <= lo < sum(values) / 4 < hi <= 10.0


def test_pairs_match_seed_and_the_axes_neither_side_names():
    rows = [row(s, {"model.name": n, "scale": sc}, err) for s in (0, 1)
            for n, sc, err in (("A", "fixed", 0.20), ("B", "fixed", 0.18), ("A", "jitter", 0.30), ("B", "jitter", 0.31))]
    rows.append(row(2, {"model.name": "B", "scale": "fixed"}, 0.1))  # no A for seed 2: unpaired
    rows.append(row(0, {"model.name": "A", "scale": "fixed"}, 0.9, status="failed"))
    h = {"a": {"model.name": "B"}, "b": {"model.name": "A"}, "expect": "lower", "test": "sign"}
    assert sorted(round(d, 6) for d in differences(h, rows)) == [-2.0, -2.0, 1.0, 1.0]
    # the same runs under two protocols pair with themselves
    same = [row(s, {"model.name": "A"}, 0.20, dense=0.19) for s in range(3)]
    h = {"a": {"protocol": "dense"}, "b": {"protocol": "centre"}, "expect": "lower"}
    assert [round(d, 6) for d in differences(h, same)] == [-1.0, -1.0, -1.0]


@pytest.mark.parametrize("diffs, expect, test, threshold, verdict", [
    ([-1.0] * 6, "lower", "sign", 0, "reproduces"),       # 6/6 pairs: p = 1/64
    ([1.0] * 6, "lower", "sign", 0, "does not"),          # significantly the other way
    ([-1.0] * 3, "lower", "sign", 0, "unresolved"),       # 3 pairs cannot reach p < 0.05
    ([-1.0] * 6, "lower", "sign", 2.0, "unresolved"),     # significant but smaller than the threshold
    ([-3.0, -2.5, -3.5], "lower", "bootstrap", 1.0, "reproduces"),
    ([0.5, 1.0, 0.2], "lower", "bootstrap", 0, "does not"),
    ([-2.0, 1.0, 0.5], "lower", "bootstrap", 0, "unresolved"),
    ([3.0, 4.0, 3.5], "higher", "bootstrap", 1.0, "reproduces"),
    ([0.2, -0.3, 0.1], "same", "bootstrap", 1.0, "reproduces"),
    ([3.0, 4.0, 3.5], "same", "bootstrap", 1.0, "does not"),
    ([], "lower", "sign", 0, "unresolved"),
    ([-1.2], "lower", "bootstrap", 0, "unresolved"),       # one pair: its interval is itself
    ([-3.0, -2.5], "lower", "bootstrap", 1.0, "unresolved"),  # two pairs: too few for an interval
])
def test_verdict_rules(diffs, expect, test, threshold, verdict):
    v = decide({"claim": "x", "expect": expect, "test": test, "threshold": threshold}, diffs)
    assert v.verdict == verdict and v.n == len(diffs)
    if diffs:
        assert v.low <= v.mean <= v.high


def spec_file(tmp_path: Path, hypotheses, **extra) -> Path:
    data = {"base": BASE, "out": str(tmp_path / "sweep"), "grid": {"model.name": ["A", "B"]}, "seeds": [0, 1, 2],
            "hypotheses": hypotheses, **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("hypothesis, message", [
    ({"a": {"model.name": "E"}, "b": {"model.name": "A"}, "expect": "lower"}, "names cell model.name=E"),
    ({"a": {"norm": "bn"}, "b": {"model.name": "A"}, "expect": "lower"}, "names grid axis 'norm'"),
    ({"a": {"protocol": "fusion"}, "b": {"protocol": "centre"}, "expect": "lower"}, "protocol 'fusion'"),
    ({"a": {"model.name": "A"}, "b": {"model.name": "B"}, "expect": "better"}, "expect must be one of"),
    ({"a": {"model.name": "A"}, "b": {"model.name": "B"}, "expect": "same", "test": "sign"}, "sign test cannot"),
])
def test_bad_hypotheses_are_config_errors_and_exit_2(tmp_path, capsys, hypothesis, message):
    path = spec_file(tmp_path, [hypothesis])
    with pytest.raises(ConfigError, match=message):
        load_spec(path)
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.split("'")[0] in err[0]


def test_a_hypothesis_for_another_budget_is_not_checked(tmp_path):
    h = {"a": {"model.name": "E"}, "b": {"model.name": "A"}, "expect": "lower", "budgets": ["big"]}
    path = spec_file(tmp_path, [h], budgets={"small": {"seeds": [0]}})
    assert load_spec(path, budget="small").hypotheses == [h]


def test_sweep_report_decides_the_hypotheses(tmp_path, fake_train):
    # fake_train: dense is 1 point below centre in every run; seed 2 never learns
    hypotheses = [
        {"claim": "dense beats centre", "a": {"protocol": "dense"}, "b": {"protocol": "centre"},
         "expect": "lower", "test": "sign"},
        {"claim": "B is level with A", "a": {"model.name": "B"}, "b": {"model.name": "A"}, "expect": "same",
         "threshold": 1.0},
        {"claim": "A never learns", "a": {"model.name": "A"}, "value": 50, "metric": "never_learned",
         "expect": "higher"},
    ]
    spec = load_spec(spec_file(tmp_path, hypotheses))
    run_sweep(spec, jobs=2, command=fake_train, log=lambda _: None)
    found = {v.claim: v for _, v in sweep_verdicts(spec.out)}
    assert found["dense beats centre"].verdict == "reproduces" and found["dense beats centre"].n == 6
    assert found["B is level with A"].verdict == "reproduces" and found["B is level with A"].mean == 0
    never = found["A never learns"]  # 1 of 3 runs: differences -50, -50, +50 from the 50% claimed
    assert never.verdict == "unresolved" and never.low == -50 and never.high == 50
    assert "**reproduces**" in verdicts_markdown(spec.out)
    assert "Pre-registered hypotheses" in render_sweep(spec.out).read_text()


def test_the_dry_run_names_the_hypotheses_the_planned_seeds_can_never_decide(tmp_path, capsys):
    hypotheses = [
        {"claim": "B beats A", "a": {"model.name": "B"}, "b": {"model.name": "A"}, "expect": "lower", "test": "sign"},
        {"claim": "jitter hurts", "a": {"scale": "jitter"}, "b": {"scale": "fixed"}, "expect": "higher",
         "test": "sign"},
        {"claim": "B is level with A", "a": {"model.name": "B"}, "b": {"model.name": "A"}, "expect": "same",
         "threshold": 1.0},
    ]
    path = spec_file(tmp_path, hypotheses, grid={"model.name": ["A", "B"],
                     "scale": {"fixed": {"data.pad": 0}, "jitter": {"data.pad": 4}}})
    spec = load_spec(path)
    cells = expand(spec)
    # B vs A pairs within each scale and seed: 2 x 3; jitter vs fixed within each net: 2 x 3
    assert [planned_pairs(h, cells) for h in hypotheses] == [6, 6, 6]
    assert undecidable_hypotheses(hypotheses, cells, budget=None) == []
    # one scale: the sign tests get 3 pairs (p >= 1/8 whatever happens); the bootstrap still can
    path = spec_file(tmp_path, hypotheses[:1] + hypotheses[2:])
    weak = undecidable_hypotheses(load_spec(path).hypotheses, expand(load_spec(path)), budget=None)
    assert weak == [("B beats A", "a sign test on 3 pairs cannot reach p < 0.05 (it needs 5)")]
    # a sitting's --seeds does not shrink the check: it counts every seed of the budget
    assert main(["sweep", str(path), "--dry-run", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "1 pre-registered hypothesis cannot be decided with the budget's 3 seeds" in out
    assert "- B beats A: a sign test on 3 pairs" in out and "level" not in out
    two = spec_file(tmp_path, hypotheses[2:], seeds=[0, 1])
    assert undecidable_hypotheses(load_spec(two).hypotheses, expand(load_spec(two)), budget=None) == [
        ("B is level with A", "2 pair(s): a bootstrap interval needs at least 3")]
