"""The run directory as a guarded place: created and writable before anything runs, locked
while a process trains into it, fingerprinted so that a resume continues the same run, and
never overwritten by accident once it holds results.

What a directory is (`status`):
- "new": nothing of a run in it; training starts afresh.
- "partial": a checkpoint and no finished mark; training resumes it (a killed or Ctrl-C'd run).
- "finished": the run completed (run.json says so, or an older run left eval.json).
- "foreign": results (metrics, weights) but no checkpoint to continue from.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from vggnet.config import RunConfig, flatten, to_dict
from vggnet.errors import ConfigError
from vggnet.files import atomic_write

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
# Keys that may change when a run is resumed: they change how it is watched or evaluated,
# or where its files are, not what is trained. Every other key is part of the fingerprint.
MAY_CHANGE_ON_RESUME = ("eval.", "train.progress", "train.checkpoint_minutes", "train.force",
                        "data.dir", "data.download", "data.workers", "device", "name")
# What a run writes; --overwrite removes exactly these (and nothing else the user put there).
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "checkpoints", "model.safetensors", "eval.json", "report.html",
               "examples.safetensors", RUN_FILE)
# The files a run reads and writes: each must be a regular file where it exists (a folder or a FIFO in
# its place would fail the run half-way, or, for model.safetensors, silently leave it without results).
RUN_FILES = ("config.yaml", "metrics.jsonl", "model.safetensors", "eval.json", "report.html", "examples.safetensors",
             RUN_FILE, LOCK_FILE, "checkpoints/last.pt", "checkpoints/prev.pt")


def prepare(out: str | os.PathLike) -> Path:
    """``out`` as an existing, writable directory, or a ConfigError saying why it cannot be one."""
    if not str(out).strip():
        raise ConfigError("--out is empty; give a run directory, e.g. --out runs/try")
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--out {path} is a file, not a directory; choose another --out") from None
    except OSError as exc:
        raise ConfigError(f"--out {path} cannot be created ({exc.strerror}); choose a writable place") from None
    if not path.is_dir():
        raise ConfigError(f"--out {path} is not a directory; choose another --out")
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--out {path} is not writable ({exc.strerror}); choose a writable place") from None
    for sub in ("checkpoints",):
        if (path / sub).exists() and not (path / sub).is_dir():
            raise ConfigError(f"{path / sub} is a file where the run keeps its checkpoints; move it away or "
                              "choose another --out")
    for name in RUN_FILES:
        if os.path.lexists(path / name) and not (path / name).is_file():
            what = "a folder" if (path / name).is_dir() else "not a regular file"
            raise ConfigError(f"{path / name} is {what} where the run keeps a file of that name; move it away "
                              "or choose another --out")
    return path


def clean_orphans(out: Path) -> list[Path]:
    """Remove the temp files a killed writer left behind (only ours: `.<name>.*.tmp`)."""
    removed = []
    for folder in (out, out / "checkpoints"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    pass
    return removed


# ---------------------------------------------------------------- the lock


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} (since {info['since']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def lock(out: Path) -> Iterator[None]:
    """Hold `run.lock` (pid, host, start time) while training into ``out``; a second process is
    refused with the holder's name. The OS releases the lock when its process dies, however it
    dies, so a stale lock file from a dead process is simply taken over (with a message)."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 holds it for all
        yield
        return
    path = out / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise ConfigError(f"{out} is in use by {_holder(text)}; wait for it to finish, or train into "
                              "another --out") from None
        except OSError as exc:  # a filesystem without locks (some NFS mounts): say so, train unlocked
            os.close(fd)
            print(f"note: {out} cannot be locked ({exc.strerror}); make sure no other run writes into it",
                  file=sys.stderr)
            yield
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino  # not a file another process just removed
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    old = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if old:
        print(f"note: took over the lock of {_holder(old)}, which is no longer running", file=sys.stderr)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    try:
        yield
    finally:
        os.ftruncate(fd, 0)  # an empty lock file: released cleanly
        os.close(fd)


# ---------------------------------------------------------------- what the directory holds


def read_run(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def status(out: Path) -> str:
    """"new", "partial", "finished" or "foreign" (see the module docstring)."""
    checkpoints = out / "checkpoints"
    has_checkpoint = any((checkpoints / n).is_file() for n in ("last.pt", "prev.pt"))
    if read_run(out).get("finished") or (not (out / RUN_FILE).is_file() and (out / "eval.json").is_file()):
        return "finished"
    if has_checkpoint:
        return "partial"
    metrics = out / "metrics.jsonl"
    if (metrics.is_file() and metrics.stat().st_size) or (out / "model.safetensors").is_file():
        return "foreign"
    return "new"


def refuse_existing(out: Path, state: str) -> None:
    """The one line for training into a directory that holds a finished or unresumable run."""
    if state == "finished":
        raise ConfigError(f"{out} holds a finished run; use --resume to report it, another --out for a new run, "
                          "or --overwrite to replace it")
    raise ConfigError(f"{out} holds results of a run (metrics.jsonl, model.safetensors) but no checkpoint to "
                      "continue from; use another --out for a new run, or --overwrite to replace them")


def overwrite(out: Path) -> None:
    """Remove what a run wrote into ``out`` (--overwrite), leaving anything else in place."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    for events in out.glob("events.out.tfevents.*"):
        events.unlink()


def trim_metrics(out: Path, lines: int, *, write: bool = True) -> list[dict[str, Any]]:
    """The first ``lines`` rows of metrics.jsonl (what the checkpoint being resumed had logged),
    parsed; with ``write`` the file is cut to them, atomically (a kill here cannot truncate it),
    dropping the rows a killed run wrote after its checkpoint. A damaged line is kept as it is
    (and left out of the rows' content) instead of failing the resume."""
    path = out / "metrics.jsonl"
    kept = path.read_bytes().split(b"\n") if path.is_file() else []
    kept = (kept[:-1] if kept and not kept[-1] else kept)[:lines]
    rows, damaged = [], []
    for n, line in enumerate(kept, start=1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            damaged.append(n)
            row = {"damaged": line.decode("utf-8", "replace")}  # keeps the count the checkpoint says
        rows.append(row)
    if write and damaged:
        print(f"note: {path}: line(s) {', '.join(map(str, damaged[:5]))} damaged; kept as they are, "
              "left out of the report", file=sys.stderr, flush=True)
    if write and len(kept) < lines:
        print(f"note: {path} has {len(kept)} of the {lines} rows the checkpoint covers; the others "
              "are lost, training continues", file=sys.stderr, flush=True)
    if write and path.is_file():
        data = b"".join(line + b"\n" for line in kept)
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return rows


# ---------------------------------------------------------------- the fingerprint


def defining_keys(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The keys that define a run, with their values (JSON-normal, so they compare after a round trip)."""
    flat = flatten(cfg) if isinstance(cfg, RunConfig) else cfg
    keep = {k: v for k, v in flat.items() if not any(k == p or (p.endswith(".") and k.startswith(p))
                                                    for p in MAY_CHANGE_ON_RESUME)}
    return json.loads(json.dumps(keep))


def fingerprint(keys: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()


def write_run(out: Path, cfg: RunConfig, *, finished: bool = False, info: dict[str, Any] | None = None) -> None:
    """run.json: the fingerprint, whether the run finished and, once it has, ``info`` (train/runinfo.py)."""
    keys = defining_keys(cfg)
    record = {"fingerprint": fingerprint(keys), "keys": keys, "finished": finished, **(info or {})}
    atomic_write(out / RUN_FILE, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))


def _recorded_keys(out: Path) -> dict[str, Any] | None:
    keys = read_run(out).get("keys")
    if isinstance(keys, dict):
        return keys
    if (out / RUN_FILE).is_file():
        print(f"note: {out / RUN_FILE} is damaged; the run is checked against its config.yaml instead",
              file=sys.stderr, flush=True)
    try:  # a run directory from before run.json: its config.yaml says what it was
        data = yaml.safe_load((out / "config.yaml").read_bytes().decode("utf-8"))
        base = to_dict(RunConfig())
        for section, values in (data or {}).items():
            if isinstance(values, dict) and isinstance(base.get(section), dict):
                base[section].update(values)
            else:
                base[section] = values
        flat = {f"{s}.{k}": v for s, d in base.items() if isinstance(d, dict) for k, v in d.items()}
        flat.update({s: v for s, v in base.items() if not isinstance(v, dict)})
        return defining_keys(flat)
    except (OSError, ValueError, yaml.YAMLError, AttributeError, TypeError):
        return None


def check_same_run(out: Path, cfg: RunConfig) -> None:
    """Refuse to resume ``out`` with a config that defines another run; the line lists the keys."""
    recorded = _recorded_keys(out)
    if recorded is None:
        print(f"note: {out} records no readable config (run.json, config.yaml); it cannot be checked that it "
              "is the same run, resuming it with the config given", file=sys.stderr, flush=True)
        return
    now = defining_keys(cfg)
    changed = [k for k in sorted(set(recorded) | set(now)) if k in recorded and k in now and recorded[k] != now[k]]
    if changed:
        shown = ", ".join(f"{k} {recorded[k]!r} -> {now[k]!r}" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise ConfigError(f"{out} was trained with other values of {shown}{more}; resume it with its own config "
                          f"(-c {out / 'config.yaml'}), start a new run with another --out, or fine-tune from it "
                          f"with --set init_from={out / 'model.safetensors'}")
