"""Localisation runs resume exactly: interrupted at an epoch's end or mid-epoch (Ctrl-C), or
killed outright, they end with the metrics rows, best weights and test figures of a run that
went straight through; a finished run is kept, another config is refused; under torchrun two
processes train what one does."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vggnet import config
from vggnet.errors import ConfigError
from vggnet.train import localisation_run
from vggnet.train.trainer import fit

# A tiny box net: width-1/8 D on 32 px canvases, 320 items (288 train, 9 steps an epoch), 3 epochs.
TINY = ["data.name=fashion-mnist-loc", "data.image_size=32", "data.num_train=320", "data.num_test=48",
        "model.name=D", "model.width=0.125", "model.head=fc", "model.box_head=scr", "model.dropout=0.0",
        "train.batch_size=32", "train.epochs=3", "train.lr=0.05", "train.progress=false", "train.health_every=0",
        "train.amp=false", "train.checkpoint_minutes=0", "eval.scales=[32]"]


def tiny(*extra):
    return config.load(None, [*TINY, *extra])


def rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in Path(path).read_text().splitlines()]


def comparable_eval(path):
    data = json.loads(Path(path).read_text())
    data.pop("entries", None)
    for row in data["protocols"].values():
        row.pop("seconds", None)
    return data


def same_run(a, b):
    assert rows(a / "metrics.jsonl") == rows(b / "metrics.jsonl")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert comparable_eval(a / "eval.json") == comparable_eval(b / "eval.json")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("loc") / "ref"
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit(tiny(), out)
    finally:
        torch.set_num_threads(before)
    return out


def test_reference_run_is_a_finished_resumable_run(reference):
    assert [r["epoch"] for r in rows(reference / "metrics.jsonl")] == [1, 2, 3]
    info = json.loads((reference / "run.json").read_text())
    assert info["finished"] is True and info["resumed"] is False
    state = __import__("torch").load(reference / "checkpoints/last.pt", weights_only=True)
    assert (state["epoch"], state["batch"], state["step"], state["metrics_lines"]) == (3, 0, 27, 3)


def _ctrl_c_at_epoch_end(run, record):
    if record["epoch"] == 1:
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("where", ["after epoch 1", "mid-epoch 2"])
def test_ctrl_c_then_resume_equals_an_uninterrupted_run(where, reference, tmp_path, one_thread, monkeypatch):
    out = tmp_path / "run"
    callbacks = ()
    if where == "after epoch 1":
        callbacks = (_ctrl_c_at_epoch_end,)
    else:
        real, calls = localisation_run.euclidean_loss, []

        def loss_then_ctrl_c(pred, target):  # the 13th step (4th of epoch 2) finishes, then the run stops
            calls.append(1)
            if len(calls) == 13:
                os.kill(os.getpid(), signal.SIGINT)
            return real(pred, target)

        monkeypatch.setattr(localisation_run, "euclidean_loss", loss_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), out, callbacks=callbacks)
    state = __import__("torch").load(out / "checkpoints/last.pt", weights_only=True)
    assert (state["epoch"], state["batch"]) == ((1, 0) if where == "after epoch 1" else (1, 4))
    assert not (out / "eval.json").exists() and json.loads((out / "run.json").read_text())["finished"] is False
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="box_head 'scr' -> 'pcr'"):
        fit(tiny("model.box_head=pcr"), out)  # another run's config is refused, not resumed
    result = fit(tiny(), out)
    assert [r["epoch"] for r in result.metrics] == [1, 2, 3] and result.test["task"] == "localisation"
    same_run(out, reference)
    assert json.loads((out / "run.json").read_text())["resumed"] is True


def test_a_finished_localisation_run_is_kept(reference, capsys):
    before = (reference / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="holds a finished run; use --resume"):
        fit(tiny(), reference)
    result = fit(tiny(), reference, resume=True)
    assert "is a finished run; nothing to train" in capsys.readouterr().out
    assert result.test["task"] == "localisation" and (reference / "metrics.jsonl").read_text() == before


def cli(args):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(localisation_run.__file__).resolve().parents[2])}
    return subprocess.Popen([sys.executable, "-m", "vggnet", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def train_args(out, *extra):
    return ["train", *[a for s in (*TINY, *extra) for a in ("--set", s)], "--out", str(out)]


def mtime(path):
    """0 while the file is missing: a checkpoint save moves last.pt to prev.pt, then the new one in."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigterm_and_sigkill_then_resume_equal_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "run"
    victim = cli(train_args(out))
    metrics = out / "metrics.jsonl"
    while victim.poll() is None and not (metrics.exists() and metrics.read_text()):
        time.sleep(0.02)
    victim.send_signal(signal.SIGTERM)
    stdout, stderr = victim.communicate(timeout=120)
    assert victim.returncode == 130 and "interrupted; saved" in stdout, stdout + stderr
    last = out / "checkpoints/last.pt"
    before = mtime(last)
    victim = cli(train_args(out))  # resumes, then is killed outright after its next checkpoint
    while victim.poll() is None and mtime(last) in (before, 0):
        time.sleep(0.002)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    final = cli([*train_args(out), "--resume"])
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0 and "resuming" in stdout, stderr
    same_run(out, reference)


@pytest.mark.slow
def test_ddp_two_processes_train_what_one_does(tmp_path):
    """Each process takes half of every global batch of the same views; DDP averages the
    gradients. No batch norm in the net, so the halves compute what the whole batch does."""
    extra = ("train.epochs=1", "model.batch_norm=false")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(localisation_run.__file__).parents[2])}
    runs = {}
    for name, launcher in (("one", [sys.executable, "-m", "vggnet"]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                    "--master_port", "29541", "-m", "vggnet"])):
        proc = subprocess.run([*launcher, *train_args(tmp_path / name, *extra)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    one, two = runs["one"][0], runs["two"][0]
    assert one["step"] == two["step"] == 9
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert abs(two["val_top1"] - one["val_top1"]) <= 1 / 32 + 1e-9  # at most one of the 32 val boxes flips
    from vggnet.weights.native import load_weights

    a = load_weights(tmp_path / "one/model.safetensors").state_dict()
    b = load_weights(tmp_path / "two/model.safetensors").state_dict()
    for key in a:
        __import__("torch").testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
