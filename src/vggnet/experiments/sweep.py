"""Run a sweep: every cell an ordinary run directory, trained in its own process.

A cell runs `python -m vggnet train -c cell.yaml --out CELL [--resume]` as a subprocess,
so a crashing cell cannot take the sweep down and a killed sweep resumes naturally: the
index (sweep.db) remembers what finished, and a cell directory with a checkpoint resumes
from it. `jobs` cells run side by side, each with cores/jobs threads (one GPU each when
there are GPUs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from vggnet.errors import ConfigError
from vggnet.experiments.index import Index, alive
from vggnet.report.rundir import summarise_run
from vggnet.experiments.spec import Cell, Spec, cell_config, expand
from vggnet import config

# {config}, {dir} are filled in; {resume} becomes --resume when the cell has a checkpoint.
DEFAULT_COMMAND = (sys.executable, "-m", "vggnet", "train", "-c", "{config}", "--out", "{dir}", "{resume}")
POLL_S = 0.2


@dataclass
class SweepResult:
    out: Path
    counts: dict[str, int]  # status -> number of cells
    ran: int  # cells started by this call


def _command(template: Sequence[str], cell: Cell) -> list[str]:
    resume = (cell.dir / "checkpoints" / "last.pt").is_file()
    mapping = {"{config}": str(cell.dir / "cell.yaml"), "{dir}": str(cell.dir)}
    out = []
    for token in template:
        if token == "{resume}":
            if resume:
                out.append("--resume")
            continue
        for name, value in mapping.items():
            token = token.replace(name, value)
        out.append(token)
    return out


def _env(slot: int, jobs: int, gpus: int) -> dict[str, str]:
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)
    src = str(Path(__file__).resolve().parents[2])  # the package's src dir, for non-installed checkouts
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
    return env


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means CPU jobs
        return 0


def _last_error(cell: Cell, returncode: int) -> str:
    """The last meaningful stderr line: what the user needs to see in the index."""
    path = cell.dir / "stderr.log"
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()] if path.is_file() else []
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "^"))]
    return (lines[-1] if lines else f"exit code {returncode}")[:500]


def prepare(spec: Spec) -> tuple[list[Cell], Index]:
    """Write each cell's resolved config and register it in the index (idempotent)."""
    cells = expand(spec)
    spec.out.mkdir(parents=True, exist_ok=True)
    index = Index(spec.out / "sweep.db")
    for cell in cells:
        cell.dir.mkdir(parents=True, exist_ok=True)
        cfg = cell_config(spec, cell)
        cfg.train.progress = False  # no progress bars in log files
        path = cell.dir / "cell.yaml"
        text = yaml.safe_dump(config.to_dict(cfg), sort_keys=False)
        started = (cell.dir / "metrics.jsonl").is_file() or (cell.dir / "checkpoints" / "last.pt").is_file()
        if started and path.is_file() and path.read_text() != text:
            raise ConfigError(f"the spec changed for cell {cell.id}, which has already run; sweep into a new "
                              f"--out, or delete {cell.dir} to rerun it")
        path.write_text(text)
        index.add(cell.id, cell.key_json, cell.seed, str(cell.dir.resolve()))
    (spec.out / "spec.yaml").write_text(yaml.safe_dump({
        "study": spec.study, "budget": spec.budget, "grid": spec.grid, "seeds": spec.seeds,
        "set": spec.overrides, "exclude": spec.exclude, "report": spec.report, "base": spec.base,
        "hypotheses": spec.hypotheses,
    }, sort_keys=False))
    return cells, index


def run_sweep(spec: Spec, *, jobs: int = 1, command: Sequence[str] = DEFAULT_COMMAND,
              retry_failed: bool = False, log: Callable[[str], None] = print) -> SweepResult:
    """Run every unfinished cell of the sweep, `jobs` at a time; return the final counts.

    Cells marked done are skipped; failed ones too unless `retry_failed`. A cell whose
    dependency failed is failed with that reason.
    """
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    cells, index = prepare(spec)
    stale = index.recover()
    if stale:
        log(f"resuming {len(stale)} cell(s) interrupted mid-run")
    if retry_failed:
        for row in index.rows("failed"):
            index.update(row["id"], status="pending", error=None)
    gpus = _gpu_count()
    todo = [c for c in cells if index.get(c.id)["status"] == "pending"]
    # Cells still being trained by the processes of an earlier, killed sweep: wait for them.
    orphans = {r["id"]: r["pid"] for r in index.rows("running")}
    if orphans:
        log(f"waiting for {len(orphans)} cell(s) still running from an earlier sweep")
    by_id = {c.id: c for c in cells}
    running: dict[int, tuple[Cell, subprocess.Popen, float, object, object]] = {}
    ran = 0
    total = len(cells)
    try:
        while todo or running or orphans:
            for run_id, pid in list(orphans.items()):
                if not alive(pid):
                    del orphans[run_id]
                    finished = (by_id[run_id].dir / "eval.json").is_file() if run_id in by_id else False
                    if finished:
                        index.update(run_id, status="done", pid=None, finished=time.time(),
                                     **summarise_run(by_id[run_id].dir))
                    else:
                        index.update(run_id, status="pending", pid=None)
                        if run_id in by_id:
                            todo.append(by_id[run_id])
            for slot in [s for s in range(jobs) if s not in running]:
                cell = _next_ready(todo, index)
                if cell is None:
                    break
                todo.remove(cell)
                status = {d: index.get(d)["status"] for d in cell.depends}
                if any(s == "failed" for s in status.values()):
                    index.update(cell.id, status="failed", error=f"dependency failed: {', '.join(cell.depends)}")
                    log(f"[skip] {cell.id}: a dependency failed")
                    continue
                out = open(cell.dir / "stdout.log", "ab")
                err = open(cell.dir / "stderr.log", "wb")
                proc = subprocess.Popen(_command(command, cell), stdout=out, stderr=err,
                                        env=_env(slot, jobs, gpus))
                index.mark_running(cell.id, proc.pid)
                running[slot] = (cell, proc, time.time(), out, err)
                ran += 1
                done = sum(1 for r in index.rows() if r["status"] in ("done", "failed") and r["id"] in by_id)
                log(f"[{done + len(running)}/{total}] start {cell.id}")
            if todo and not running and not orphans and _next_ready(todo, index) is None:
                for cell in todo:
                    index.update(cell.id, status="failed", error="dependencies never finished (a cycle?)")
                todo.clear()
            for slot, (cell, proc, start, out, err) in list(running.items()):
                if proc.poll() is None:
                    continue
                out.close()
                err.close()
                del running[slot]
                _finish(index, cell, proc.returncode, time.time() - start, log)
            if running or todo or orphans:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        for cell, proc, start, out, err in running.values():
            # SIGTERM, not SIGINT: a sweep started with `&` from a script (no job control) gives its
            # cells an ignored SIGINT until the trainer's loop takes it; it saves a checkpoint on either
            proc.send_signal(signal.SIGTERM)
        for cell, proc, start, out, err in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.returncode == 0:  # it finished before the signal reached it
                _finish(index, cell, 0, time.time() - start, log)
            else:  # its time so far counts: the resumed run adds the rest
                index.update(cell.id, status="pending", pid=None,
                             wall_s=(index.get(cell.id)["wall_s"] or 0.0) + time.time() - start)
        raise
    finally:
        counts = index.counts()
        index.close()
    return SweepResult(out=spec.out, counts=counts, ran=ran)


def _next_ready(todo: list[Cell], index: Index) -> Cell | None:
    for cell in todo:
        if all(index.get(d)["status"] in ("done", "failed") for d in cell.depends):
            return cell
    return None


def _finish(index: Index, cell: Cell, returncode: int, wall_s: float, log: Callable[[str], None]) -> None:
    row = index.get(cell.id)
    wall = (row["wall_s"] or 0.0) + wall_s
    results = summarise_run(cell.dir)
    if returncode == 0:
        index.update(cell.id, status="done", pid=None, finished=time.time(), wall_s=wall, **results)
        top1 = results["test_top1"]
        log(f"done  {cell.id}: test top-1 {top1:.4f}" if top1 is not None else f"done  {cell.id}")
    else:
        error = _last_error(cell, returncode)
        index.update(cell.id, status="failed", pid=None, finished=time.time(), wall_s=wall, error=error, **results)
        log(f"FAIL  {cell.id}: {error}")
