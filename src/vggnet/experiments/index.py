"""The sweep index: one SQLite file (sweep.db) listing every cell, its status and final metrics.

SQLite because it survives a killed sweep mid-write, several processes can read it while
the sweep runs, and anyone can query it (`sqlite3 sweep.db 'select * from runs'`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

STATUSES = ("pending", "running", "done", "failed")

SCHEMA = """
create table if not exists runs (
    id text primary key,          -- cell directory relative to cells/: 'name=A,batch_size=8/seed0'
    key text not null,            -- the grid point as JSON
    seed integer not null,
    dir text not null,
    status text not null default 'pending',
    error text,
    pid integer,
    test_top1 real,               -- accuracy (0-1) under the first eval protocol
    best_val_top1 real,           -- accuracy (0-1)
    num_classes integer,
    protocols text,               -- eval.json "protocols" as JSON
    epochs integer,
    wall_s real,                  -- summed over attempts
    attempts integer not null default 0,
    started real,
    finished real
)
"""

COLUMNS = ("id", "key", "seed", "dir", "status", "error", "pid", "test_top1", "best_val_top1", "num_classes",
           "protocols", "epochs", "wall_s", "attempts", "started", "finished")


class Index:
    """Thin wrapper over sweep.db; every write is its own transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("pragma journal_mode=wal")
        self.db.execute(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add(self, run_id: str, key: str, seed: int, run_dir: str) -> None:
        """Register a cell once; a re-run of the sweep keeps existing rows and their status."""
        self.db.execute("insert or ignore into runs (id, key, seed, dir) values (?, ?, ?, ?)",
                        (run_id, key, seed, run_dir))

    def get(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("select * from runs where id = ?", (run_id,)).fetchone()
        return dict(row) if row else None

    def rows(self, status: str | None = None) -> list[dict[str, Any]]:
        query, args = "select * from runs", ()
        if status:
            query, args = query + " where status = ?", (status,)
        return [dict(r) for r in self.db.execute(query + " order by rowid", args)]

    def update(self, run_id: str, **values: Any) -> None:
        bad = set(values) - set(COLUMNS)
        if bad:
            raise KeyError(f"unknown index columns {sorted(bad)}")
        if "status" in values and values["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"update runs set {sets} where id = ?", (*values.values(), run_id))

    def mark_running(self, run_id: str, pid: int) -> None:
        self.db.execute("update runs set status = 'running', pid = ?, error = null, started = ?, "
                        "attempts = attempts + 1 where id = ?", (pid, time.time(), run_id))

    def recover(self) -> list[str]:
        """'running' rows whose process is gone (a killed sweep) go back to 'pending'."""
        stale = [r["id"] for r in self.rows("running") if not alive(r["pid"])]
        for run_id in stale:
            self.update(run_id, status="pending", pid=None)
        return stale

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for row in self.db.execute("select status, count(*) from runs group by status"):
            out[row[0]] = row[1]
        return out


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child not yet reaped is a zombie: gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def read_rows(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of a sweep's index with `key` and `protocols` decoded (for reports)."""
    path = Path(sweep_dir) / "sweep.db"
    if not path.is_file():
        return []
    index = Index(path)
    try:
        rows = index.rows()
    finally:
        index.close()
    for row in rows:
        row["key"] = json.loads(row["key"])
        row["protocols"] = json.loads(row["protocols"]) if row["protocols"] else {}
    return rows
