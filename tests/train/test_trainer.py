"""The loop: run directory contents, determinism, exact resume after kill -9, SIGINT,
non-finite losses, max_steps, frozen parameters, DDP equivalence."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from vggnet.errors import ConfigError, TrainingError
from vggnet.weights.native import load_weights, read_metadata
from vggnet import config
from vggnet.train import checkpoint
from vggnet.train.trainer import fit


EPOCH_KEYS = {"epoch", "step", "train_loss", "val_top1", "lr", "images_per_s", "wall_s"}
TIMING = ("images_per_s", "wall_s")


def epochs(path):
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows if "train_loss" in r]


def test_run_directory(tmp_path, tiny_cfg, capsys, check_run_outputs):
    result = fit(tiny_cfg(), tmp_path / "run")
    check_run_outputs(tmp_path / "run", capsys.readouterr().out)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "model.safetensors", "eval.json"):
        assert (run / name).is_file(), name
    assert list(run.glob("events.out.tfevents.*"))
    assert config.load(run / "config.yaml") == tiny_cfg()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "train_loss" in x]
    assert [r["epoch"] for r in rows] == [1, 2] and all(EPOCH_KEYS <= set(r) for r in rows)
    assert rows[-1]["step"] == 2 * (288 // 32)  # 320 images less a 10% validation split
    test = json.loads((run / "eval.json").read_text())["protocols"]["centre"]
    assert test["n"] == 64 and 0 <= test["top1_error"] <= 1 and test["top5_error"] <= test["top1_error"]
    assert result.test["protocols"]["centre"] == test
    meta = read_metadata(run / "model.safetensors")
    assert meta["preprocessing"]["normalize"] == "standardize" and len(meta["classes"]) == 4
    load_weights(run / "model.safetensors")


def test_training_learns(tmp_path, tiny_cfg):
    result = fit(tiny_cfg("train.epochs=4"), tmp_path / "run")
    rows = [m for m in result.metrics if "train_loss" in m]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert result.best_val_top1 > 0.5  # synthetic classes are separable; chance is 0.25


def test_plateau_and_early_stopping_events_name_the_epoch_they_follow(tmp_path, tiny_cfg):
    # no BN and a vanishing lr: validation accuracy is the same every epoch, so it never improves
    cfg = tiny_cfg("model.batch_norm=false", "train.lr=1e-12", "train.warmup_epochs=0", "train.schedule=plateau",
                   "train.plateau_patience=1", "train.early_stop_patience=2", "train.epochs=10")
    result = fit(cfg, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if "train_loss" in r] == [1, 2, 3] and result.stopped_early
    events = [(r["event"], r["epoch"]) for r in lines if r.get("event") in ("lr_decrease", "early_stop")]
    assert events == [("lr_decrease", 2), ("lr_decrease", 3), ("early_stop", 3)]  # the LR rule does not delay it


def test_same_seed_same_metrics(tmp_path, tiny_cfg):
    fit(tiny_cfg(), tmp_path / "a")
    fit(tiny_cfg(), tmp_path / "b")
    assert epochs(tmp_path / "a/metrics.jsonl") == epochs(tmp_path / "b/metrics.jsonl")


def test_max_steps(tmp_path, tiny_cfg):
    result = fit(tiny_cfg("train.max_steps=5", "train.epochs=10"), tmp_path / "run")
    assert max(m["step"] for m in result.metrics if "step" in m) == 5


def _cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "vggnet", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _train_args(out, tiny, *extra):
    sets = [a for s in (*tiny, "train.epochs=3", "train.checkpoint_minutes=0", *extra) for a in ("--set", s)]
    return ["train", *sets, "--out", str(out)]


def test_kill_9_mid_epoch_then_resume_is_exact(tmp_path, tiny_sets):
    ref = _cli(_train_args(tmp_path / "ref", tiny_sets))
    assert ref.wait(timeout=300) == 0, ref.stdout.read()
    victim = _cli(_train_args(tmp_path / "run", tiny_sets))
    metrics = tmp_path / "run/metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None:
        if metrics.exists() and '"train_loss"' in metrics.read_text():  # epoch 1 is written
            break
        time.sleep(0.05)
    time.sleep(0.4)  # into epoch 2 (checkpoints are written every step here)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert (state["epoch"], state["step"]) > (0, 0)
    resumed = _cli(_train_args(tmp_path / "run", tiny_sets))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resuming" in out
    assert epochs(metrics) == epochs(tmp_path / "ref/metrics.jsonl")


def test_killed_between_last_step_and_epoch_end_resumes_exactly(tmp_path, tiny_cfg, monkeypatch):
    from vggnet.train.trainer import Trainer

    fit(tiny_cfg("train.epochs=1"), tmp_path / "ref")
    real_end = Trainer.end_epoch

    def killed(self, start):  # every step was checkpointed; the process dies before the epoch closes
        raise RuntimeError("killed")

    monkeypatch.setattr(Trainer, "end_epoch", killed)
    with pytest.raises(RuntimeError, match="killed"):
        fit(tiny_cfg("train.epochs=1", "train.checkpoint_minutes=0"), tmp_path / "run")
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"]) == (0, 9, 9)
    monkeypatch.setattr(Trainer, "end_epoch", real_end)
    fit(tiny_cfg("train.epochs=1", "train.checkpoint_minutes=0"), tmp_path / "run")
    assert epochs(tmp_path / "run/metrics.jsonl") == epochs(tmp_path / "ref/metrics.jsonl")


def test_resume_without_checkpoint_is_an_error(tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match="nothing to resume"):
        fit(tiny_cfg(), tmp_path / "none", resume=True)


@pytest.mark.slow
def test_sigint_saves_and_exits_cleanly(tmp_path, tiny_sets):
    proc = _cli(_train_args(tmp_path / "run", tiny_sets, "train.epochs=50"))
    metrics = tmp_path / "run/metrics.jsonl"
    while proc.poll() is None and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Resume with: vggnet train --out" in out
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] < 50  # stopped where it was, not at the end


def test_nonfinite_loss_rolls_back_with_lower_lr(tmp_path, tiny_cfg):
    from vggnet.train.trainer import make_model

    cfg = tiny_cfg("train.epochs=1")
    model = make_model(cfg, 4, 3)
    calls = {"n": 0}
    forward = model.forward

    def poisoned(x):  # one NaN batch at the fourth training step
        calls["n"] += 1
        out = forward(x)
        return out * float("nan") if calls["n"] == 4 else out

    model.forward = poisoned
    result = fit(cfg, tmp_path / "run", model=model)
    events = [m for m in result.metrics if m.get("event") == "nonfinite_loss"]
    assert len(events) == 1 and events[0]["step"] == 3 and "epoch 1, step 3" in events[0]["message"]
    rows = [m for m in result.metrics if "train_loss" in m]
    # the weights (and step count) went back to the epoch's start; the 5 batches after the NaN one trained
    assert len(rows) == 1 and rows[0]["step"] == 9 - 4
    state = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)
    assert state["lr_factor"] == pytest.approx(0.1) and state["rollbacks"] == 1


def test_nonfinite_loss_stop_names_the_step(tmp_path, tiny_cfg):
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, step \d+"):
        fit(tiny_cfg("train.lr=1e8", "train.schedule=constant", "model.batch_norm=false",
                     "train.on_nonfinite=stop"), tmp_path / "run")


def test_frozen_parameters_are_left_out(tmp_path, tiny_cfg):
    from vggnet.train.trainer import make_model

    cfg = tiny_cfg("train.epochs=1")
    model = make_model(cfg, 4, 3)
    for p in model.features.parameters():
        p.requires_grad_(False)
    before = [p.clone() for p in model.features.parameters()]
    fit(cfg, tmp_path / "run", model=model)
    assert all(torch.equal(a, b) for a, b in zip(before, model.features.parameters()))


def test_cli_train_prints_accuracy_and_run_dir(tmp_path, tiny_sets):
    proc = _cli(["train", *[a for s in (*tiny_sets, "train.epochs=1") for a in ("--set", s)], "--out", str(tmp_path / "r")])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "test accuracy" in out and f"run directory: {tmp_path / 'r'}" in out


def test_no_validation_trains_on_every_image_and_keeps_the_last_weights(tmp_path, tiny_sets):
    out = tmp_path / "r"
    proc = _cli(["train", *[a for s in (*tiny_sets, "data.val_fraction=0") for a in ("--set", s)], "--out", str(out)])
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    assert "no validation images (data.val_fraction=0)" in text and "best validation" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2 and all("val" not in ln and "train loss" in ln for ln in lines), lines
    rows = epochs(out / "metrics.jsonl")
    assert rows[-1]["step"] == 2 * (320 // 32) and all(r["val_top1"] is None for r in rows)  # all 320 images
    last = checkpoint.load(out / "checkpoints/last.pt")["model"]
    saved = load_weights(out / "model.safetensors").state_dict()
    assert all(torch.equal(saved[k], v) for k, v in last.items())  # the test set scores the last epoch's weights
    assert "best val" not in (out / "report.html").read_text()


@pytest.mark.parametrize("sets", [("train.schedule=plateau",), ("train.early_stop_patience=2",)])
def test_no_validation_refuses_what_follows_validation(tmp_path, tiny_cfg, sets):
    with pytest.raises(ConfigError, match=r"data.val_fraction=0 leaves no validation images.*val_fraction above 0"):
        fit(tiny_cfg("data.val_fraction=0", *sets), tmp_path / "run")
    assert not (tmp_path / "run/metrics.jsonl").exists()


def test_cli_unknown_key_is_one_line_exit_2(tmp_path):
    proc = _cli(["train", "--set", "train.lrr=1", "--out", str(tmp_path / "r")])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out.strip().count("\n") == 0 and "did you mean 'train.lr'" in out


DDP_SETS = ["model.batch_norm=false", "data.flip=false", "data.pad=0", "train.amp=false", "train.epochs=1",
            "train.health_every=0"]


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tmp_path, tiny_sets):
    sets = [a for s in (*tiny_sets, *DDP_SETS) for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "vggnet", "train", *sets, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29533", "-m", "vggnet", "train", *sets, "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one, two = epochs(tmp_path / "one/metrics.jsonl"), epochs(tmp_path / "two/metrics.jsonl")
    assert one[0]["step"] == two[0]["step"]
    for key in ("train_loss", "val_top1", "val_loss"):
        assert two[0][key] == pytest.approx(one[0][key], rel=1e-4, abs=1e-5)
    a = load_weights(tmp_path / "one/model.safetensors").state_dict()
    b = load_weights(tmp_path / "two/model.safetensors").state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert yaml.safe_load((tmp_path / "two/config.yaml").read_text())["train"]["batch_size"] == 32
