"""Signals and kills: SIGTERM saves like Ctrl-C, a second Ctrl-C cannot cut the epoch-end save in
half, a run killed with SIGKILL again and again (at random steps and right after a checkpoint
rename) ends with the files of a run never interrupted, and the CLI's bad-input lines."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vggnet.train import trainer
from vggnet.train.trainer import fit

TIMING = ("images_per_s", "wall_s")


def rows(path):
    """Every metrics.jsonl row (epochs and events) without its wall-clock fields."""
    out = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in out]


def cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vggnet", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def train_args(out, tiny, *extra):
    sets = [a for s in (*tiny, "train.checkpoint_minutes=0", "train.health_every=2", *extra) for a in ("--set", s)]
    return ["train", *sets, "--out", str(out)]


def test_second_ctrl_c_during_the_epoch_end_save_waits_for_it(tmp_path, tiny_cfg, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "render_report", lambda out: None)
    real_save = trainer.save_weights

    def save_under_fire(*args, **kwargs):  # Ctrl-C twice while the epoch's weights are written
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        real_save(*args, **kwargs)

    monkeypatch.setattr(trainer, "save_weights", save_under_fire)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_cfg(), tmp_path / "run")
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == (1, 0)  # the epoch closed and was saved whole
    # the resume command it prints works as printed: the run's own config (it was trained with --set values)
    assert f"Resume with: vggnet train -c {tmp_path / 'run' / 'config.yaml'} --out {tmp_path / 'run'}" in \
        capsys.readouterr().out
    monkeypatch.setattr(trainer, "save_weights", real_save)
    fit(tiny_cfg(), tmp_path / "run")
    assert [r["epoch"] for r in rows(tmp_path / "run/metrics.jsonl") if "train_loss" in r] == [1, 2]


def test_cli_bad_out_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (str(tmp_path / "file"), ""):
        proc = cli(["train", "--out", out])
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2 and stderr.count("\n") == 1 and "--out" in stderr, stderr


def comparable_eval(path):
    data = json.loads(Path(path).read_text())
    data.pop("entries", None)  # dated; the protocols are compared field for field, less their timings
    for row in data["protocols"].values():
        row.pop("seconds")
    return data


@pytest.mark.slow
def test_sigterm_saves_and_resumes_exactly(tmp_path, tiny_sets):
    ref = cli(train_args(tmp_path / "ref", tiny_sets, "train.epochs=3"))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    victim = cli(train_args(tmp_path / "run", tiny_sets, "train.epochs=3"))
    metrics = tmp_path / "run/metrics.jsonl"
    while victim.poll() is None and not (metrics.exists() and '"train_loss"' in metrics.read_text()):
        time.sleep(0.05)
    victim.send_signal(signal.SIGTERM)
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 130 and "interrupted; saved" in out, out + err
    resumed = cli(train_args(tmp_path / "run", tiny_sets, "train.epochs=3"))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0 and "resuming" in out, err
    assert rows(metrics) == rows(tmp_path / "ref/metrics.jsonl")
    assert (tmp_path / "run/model.safetensors").read_bytes() == (tmp_path / "ref/model.safetensors").read_bytes()


@pytest.mark.slow
def test_sigkill_loop_ends_like_an_uninterrupted_run(tmp_path, tiny_sets):
    """12 kills: half at a random moment after a new checkpoint, half the instant one is renamed."""
    args = ("train.epochs=4",)
    ref = cli(train_args(tmp_path / "ref", tiny_sets, *args))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    run, rng, kills = tmp_path / "run", random.Random(19), 0
    last = run / "checkpoints" / "last.pt"
    while kills < 12:
        before = last.stat().st_mtime_ns if last.exists() else 0
        victim = cli(train_args(run, tiny_sets, *args))
        while victim.poll() is None and (not last.exists() or last.stat().st_mtime_ns == before):
            time.sleep(0.002)
        if victim.poll() is not None:  # it finished before a new checkpoint: nothing left to kill
            assert victim.returncode == 0, victim.stderr.read()
            break
        if kills % 2:
            time.sleep(rng.uniform(0, 0.5))
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
    assert kills >= 10, f"only {kills} kills before the run finished"
    if victim.returncode != 0:  # killed last: one more run to the end
        final = cli(train_args(run, tiny_sets, *args))
        out, err = final.communicate(timeout=300)
        assert final.returncode == 0, err
    assert rows(run / "metrics.jsonl") == rows(tmp_path / "ref/metrics.jsonl")
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "ref/model.safetensors").read_bytes()
    assert comparable_eval(run / "eval.json") == comparable_eval(tmp_path / "ref/eval.json")
    assert not list(run.rglob(".*.tmp"))
