"""benchmarks/record.py, the record preset's figures over seeds (BENCHMARKS.md): a finished run is
exported with GNU time's peak memory and wall clock, never trained again; an unfinished one is
refused; the summary gives the seeds' mean, spread and the minutes to the target."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import record  # noqa: E402

GNU_TIME = """\tCommand being timed: "python -m vggnet train -c configs/fashion-mnist/record.yaml --set seed=1"
\tUser time (seconds): 5061.53
\tElapsed (wall clock) time (h:mm:ss or m:ss): 44:02.37
\tAverage shared text size (kbytes): 0
\tMaximum resident set size (kbytes): 1423116
\tExit status: 0
"""


def _finished_run(root: Path, seed: int, dense_error: float, multi_crop_error: float | None = None) -> Path:
    run = root / f"record-s{seed}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"model:\n  width: 0.5\ntrain:\n  epochs: 2\nseed: {seed}\n")
    lines = [{"epoch": 1, "val_top1": 0.90, "wall_s": 60.0}, {"event": "health", "step": 3},
             {"epoch": 2, "step": 3, "health": {"features.0": {"dead": 0.0}}},
             {"epoch": 2, "val_top1": 0.956, "wall_s": 120.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    protocols = {"dense": {"top1_error": dense_error, "top5_error": 0.001},
                 "centre": {"top1_error": dense_error + 0.002, "top5_error": 0.001}}
    if multi_crop_error is not None:  # what `vggnet eval RUN --protocol multi_crop` adds
        protocols["multi_crop"] = {"top1_error": multi_crop_error, "top5_error": 0.001}
    (run / "eval.json").write_text(json.dumps({"split": "test", "n": 10000, "protocols": protocols}))
    run.with_suffix(".time").write_text(GNU_TIME)
    run.with_suffix(".json").write_text(json.dumps({"started": "2026-12-07T11:01:30Z", "load_at_start": 0.75}))
    return run


def test_a_finished_run_is_exported_with_its_memory_and_wall_clock_not_retrained(tmp_path, capsys):
    for seed, error, multi_crop in ((1, 0.050, None), (2, 0.046, 0.044)):
        run = _finished_run(tmp_path / "runs", seed, error, multi_crop)
        record.export(seed, run, record.train(seed, run, []), tmp_path)
    row = json.loads((tmp_path / "record_seed1.json").read_text())
    assert row["peak_rss_kb"] == 1423116 and row["wall_clock"] == "44:02.37"
    assert row["started"] == "2026-12-07T11:01:30Z" and row["test"]["dense"]["top1_error"] == 0.050
    assert [e["epoch"] for e in row["epochs"]] == [1, 2]  # health events and snapshots are not epochs
    assert row["run_config"] == {"model": {"width": 0.5}, "train": {"epochs": 2}, "seed": 1}  # what ran, overrides too

    record.summary(tmp_path)
    out = capsys.readouterr().out
    header, rule = out.splitlines()[:2]
    assert rule.count("|") == header.count("|")
    assert "| 1 | 2 | 95.00 | 94.80 | – | 95.60 | 2.0 | 2.0 | 44:02.37 | 1.42 GB |" in out
    assert "| 2 | 2 | 95.40 | 95.20 | 95.60 | 95.60 |" in out
    assert "multi_crop: mean 95.60% ± – (sample sd, n = 1" in out
    assert "dense: mean 95.20% ± 0.28 (sample sd, n = 2, range 95.00-95.40)" in out
    assert "not met" in out  # two seeds decide nothing, whatever their mean


def test_an_unfinished_run_is_refused_rather_than_resumed_with_a_wrong_time(tmp_path):
    run = tmp_path / "record-s0"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "wall_s": 60.0}) + "\n")
    with pytest.raises(SystemExit, match="unfinished run"):
        record.train(0, run, [])


def test_a_run_without_validation_shows_no_validation_figures(tmp_path, capsys):
    run = _finished_run(tmp_path / "runs", 0, 0.048)  # data.val_fraction=0: the epochs carry no val_top1
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_top1": 0.96, "wall_s": 90.0}) + "\n")
    record.export(0, run, record.train(0, run, []), tmp_path)
    record.summary(tmp_path)
    assert "| 0 | 1 | 95.20 | 95.00 | – | – | 1.5 | – | 44:02.37 | 1.42 GB |" in capsys.readouterr().out
