"""The guarded run directory: a writable --out, one process at a time, resume only the same
run, finished runs never retrained by accident, orphan temp files removed, the user's umask."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vggnet import config
from vggnet.errors import ConfigError
from vggnet.train import rundir, trainer
from vggnet.train.trainer import fit


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    monkeypatch.setattr(trainer, "render_report", lambda out: None)  # matplotlib is not under test here


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_sets_module):
    """One finished tiny run (2 optimizer steps), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("runs") / "done"
    old = os.umask(0o022)
    try:
        fit(config.load(None, [*tiny_sets_module, "train.epochs=1", "train.max_steps=2",
                               "train.checkpoint_minutes=0"]), out)
    finally:
        os.umask(old)
    return out


def copy_run(src, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def cfg_of(tiny, *extra):
    return config.load(None, [*tiny, "train.epochs=1", "train.max_steps=2", *extra])


@pytest.mark.parametrize("make,match", [
    (lambda t: "", "--out is empty"),
    (lambda t: (t / "f").write_text("x") and t / "f", "is a file"),
    (lambda t: (t / "f").write_text("x") and t / "f" / "run", "cannot be created"),
    (lambda t: Path("/proc/vggnet-test/run"), "cannot be created"),
    (lambda t: (t / "r" / "checkpoints").parent.mkdir() or (t / "r" / "checkpoints").write_text("x") and t / "r",
     "checkpoints is a file"),
])
def test_out_must_be_a_writable_directory(tmp_path, make, match, tiny_cfg):
    with pytest.raises(ConfigError, match=match):
        fit(tiny_cfg(), make(tmp_path))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out(tmp_path, tiny_cfg):
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="not writable|cannot be created"):
        fit(tiny_cfg(), tmp_path / "ro" / "run")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_missing_device(tmp_path, tiny_cfg, device):
    with pytest.raises(ConfigError, match="no CUDA device"):
        fit(tiny_cfg(f"device={device}"), tmp_path / "run")


def test_model_too_large_is_refused_before_allocating(tmp_path, tiny_cfg):
    with pytest.raises(ConfigError, match=r"cannot fit: .* GiB .*lower model.width"):
        fit(tiny_cfg("model.width=2000"), tmp_path / "run")


def test_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(tmp_path, tiny_cfg, capsys):
    out = rundir.prepare(tmp_path / "run")
    with rundir.lock(out):
        info = json.loads((out / rundir.LOCK_FILE).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(ConfigError, match=f"in use by pid {os.getpid()} on "):
            fit(tiny_cfg(), out)
    # a lock file left by a process that died without releasing it
    (out / rundir.LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "h", "since": "then"}))
    with rundir.lock(out):
        pass
    assert "took over the lock of pid 999999" in capsys.readouterr().err


def test_two_processes_cannot_both_hold_the_lock(tmp_path):
    out = rundir.prepare(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                               "from vggnet.train.rundir import lock\nwith lock(Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(60)\n", str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"in use by pid {holder.pid}"):
            with rundir.lock(out):
                pass
    finally:
        holder.kill()
        holder.wait()
    with rundir.lock(out):  # the OS released the killed holder's lock
        pass


def test_finished_run_is_not_retrained(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    before = (run / "metrics.jsonl").read_bytes(), (run / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="holds a finished run; use --resume .* another --out .* --overwrite"):
        fit(cfg_of(tiny_sets_module), run)
    result = fit(cfg_of(tiny_sets_module), run, resume=True)  # reports, does not retrain
    assert result.test["protocols"]["centre"]["n"] == 64
    assert ((run / "metrics.jsonl").read_bytes(), (run / "model.safetensors").read_bytes()) == before


def test_overwrite_starts_afresh(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    (run / "notes.txt").write_text("mine")
    fit(cfg_of(tiny_sets_module, "train.max_steps=1"), run, overwrite=True)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "train_loss" in x]
    assert [r["step"] for r in rows] == [1] and (run / "notes.txt").read_text() == "mine"


def test_results_without_a_checkpoint_are_not_overwritten(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    shutil.rmtree(run / "checkpoints")
    for name in ("eval.json", "run.json"):
        (run / name).unlink()
    with pytest.raises(ConfigError, match="no checkpoint to continue"):
        fit(cfg_of(tiny_sets_module), run)


def unfinish(run):
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "finished": False}))


def test_resume_with_other_run_defining_keys_lists_them(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    with pytest.raises(ConfigError) as info:
        fit(cfg_of(tiny_sets_module, "train.lr=0.05", "seed=3", "train.batch_size=16"), run)
    message = str(info.value)
    for part in ("train.lr 0.02 -> 0.05", "seed 0 -> 3", "train.batch_size 32 -> 16", "another --out", "init_from="):
        assert part in message, message
    with pytest.raises(ConfigError, match="model.width 0.125 -> 0.25"):
        fit(cfg_of(tiny_sets_module, "model.width=0.25"), run)


def test_keys_that_may_change_on_resume(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    result = fit(cfg_of(tiny_sets_module, "eval.protocols=[centre]", "train.checkpoint_minutes=1",
                        "train.progress=true"), run)
    assert set(result.test["protocols"]) >= {"centre"}


def test_orphan_temp_files_are_removed_and_files_follow_the_umask(finished, tmp_path, tiny_sets_module):
    for name in ("model.safetensors", "eval.json", "checkpoints/last.pt", "run.json"):
        assert (finished / name).stat().st_mode & 0o777 == 0o644, name
    run = copy_run(finished, tmp_path)
    unfinish(run)
    (run / "checkpoints" / ".last.pt.x1.tmp").write_bytes(b"half")
    (run / ".eval.json.x2.tmp").write_bytes(b"half")
    fit(cfg_of(tiny_sets_module), run)
    assert not list(run.rglob(".*.tmp"))


def test_a_damaged_last_checkpoint_resumes_from_the_previous_one(finished, tmp_path, tiny_sets_module, capfd):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    assert (run / "checkpoints" / "prev.pt").is_file()
    data = bytearray((run / "checkpoints" / "last.pt").read_bytes())
    weights = next(v for v in torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"].values()
                   if v.dim() == 1 and v.numel() >= 8 and v.abs().sum() > 0)
    at = data.find(weights.numpy().tobytes())  # a bit inside the weights (not zip padding)
    assert at > 0
    data[at + 5] ^= 0x01
    (run / "checkpoints" / "last.pt").write_bytes(bytes(data))
    fit(cfg_of(tiny_sets_module, "train.checkpoint_minutes=0"), run)
    err = capfd.readouterr().err
    assert "last.pt is damaged" in err and "resumed from the previous checkpoint" in err
    assert rundir.status(run) == "finished"


@pytest.mark.parametrize("name", rundir.RUN_FILES)
def test_a_run_file_that_is_a_folder_is_refused_before_anything_runs(tmp_path, name):
    (tmp_path / "run" / name).mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"{name} is a folder where the run keeps a file"):
        rundir.prepare(tmp_path / "run")


def test_a_fifo_in_place_of_a_run_file_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "metrics.jsonl")
    with pytest.raises(ConfigError, match="metrics.jsonl is not a regular file"):
        rundir.prepare(tmp_path / "run")


def test_results_without_a_checkpoint_do_not_suggest_resume(finished, tmp_path, tiny_sets_module):
    run = copy_run(finished, tmp_path)
    shutil.rmtree(run / "checkpoints")
    for name in ("eval.json", "run.json"):
        (run / name).unlink()
    for resume in (False, True):
        with pytest.raises(ConfigError) as info:
            fit(cfg_of(tiny_sets_module), run, resume=resume)
        assert "--resume" not in str(info.value) and "--overwrite" in str(info.value)


def test_damaged_metrics_lines_are_kept_and_the_run_resumes(finished, tmp_path, tiny_sets_module, capfd):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    lines = (run / "metrics.jsonl").read_bytes().split(b"\n")
    lines[0] = b"\xff\xfe{not json"
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines))
    fit(cfg_of(tiny_sets_module), run)
    err = capfd.readouterr().err
    assert "metrics.jsonl: line(s) 1 damaged; kept as they are" in err and "Traceback" not in err
    assert (run / "metrics.jsonl").read_bytes().split(b"\n")[0] == b"\xff\xfe{not json"  # nothing rewritten away
    from vggnet.report.rundir import read_metrics

    assert read_metrics(run)[0]  # the other rows still read


def test_lost_metrics_rows_are_said(finished, tmp_path, tiny_sets_module, capfd):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    (run / "metrics.jsonl").write_text("")
    fit(cfg_of(tiny_sets_module), run)
    assert "has 0 of the" in capfd.readouterr().err


@pytest.mark.parametrize("damage", ["run.json", "run.json and config.yaml"])
def test_an_unreadable_fingerprint_is_said_not_a_traceback(finished, tmp_path, tiny_sets_module, capfd, damage):
    run = copy_run(finished, tmp_path)
    unfinish(run)
    (run / "run.json").write_bytes(b"\x00garbage")
    if "config.yaml" in damage:
        (run / "config.yaml").write_bytes(bytes(range(128, 256)))
    fit(cfg_of(tiny_sets_module), run)
    err = capfd.readouterr().err
    assert "run.json is damaged" in err
    assert ("cannot be checked that it is the same run" in err) == ("config.yaml" in damage)


def test_damaged_run_files_still_make_a_report(finished, tmp_path):
    from vggnet.report.run import render_run

    run = copy_run(finished, tmp_path)
    for name in ("metrics.jsonl", "eval.json", "config.yaml", "run.json"):
        (run / name).write_bytes(bytes(range(128, 256)) * 4)
    assert render_run(run).is_file()


def test_the_resume_line_says_when_max_steps_was_reached(tmp_path, tiny_sets_module, capsys):
    cfg = config.load(None, [*tiny_sets_module, "train.epochs=2", "train.max_steps=2", "train.checkpoint_minutes=0"])
    fit(cfg, tmp_path / "run")
    unfinish(tmp_path / "run")
    capsys.readouterr()
    fit(cfg, tmp_path / "run")
    out = capsys.readouterr().out
    assert "resuming" in out and "after its last step, to evaluate it" in out, out


def test_a_read_only_out_even_for_root(tmp_path, monkeypatch):
    """What a read-only place looks like to the write probe (root writes anywhere, so it is simulated)."""
    import errno

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rundir.tempfile, "mkstemp", read_only)
    with pytest.raises(ConfigError, match=r"--out .* is not writable \(Read-only file system\); choose a writable"):
        rundir.prepare(tmp_path / "run")
