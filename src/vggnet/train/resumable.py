"""The checkpoint half of a run loop, shared by the classification and localisation runs: save
the loop's state() to checkpoints/last.pt (rank 0 only) and resume from the newest checkpoint
that verifies, with metrics.jsonl trimmed to the lines that checkpoint covers."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vggnet.train import checkpoint, rundir
from vggnet.train.distributed import Context


class Resumable:
    ctx: Context
    out: Path
    metrics: list[dict[str, Any]]
    last_save: float

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save_checkpoint(self) -> None:
        if self.ctx.is_main:
            checkpoint.save(self.state(), self.out / "checkpoints" / checkpoint.LAST)
        self.last_save = time.monotonic()

    def resume(self) -> bool:
        state = checkpoint.load_latest(self.out / "checkpoints", self.load_state)
        if state is None:
            return False
        self.metrics = rundir.trim_metrics(self.out, state["metrics_lines"], write=self.ctx.is_main)
        return True
