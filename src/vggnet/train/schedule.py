"""Learning-rate schedules as pure functions of the optimizer step, so the LR moves only
when the optimizer stepped and a resumed run lands on the same value.

``plateau`` is the paper's rule (3.1): divide by 10 when validation accuracy stops
improving, at most ``plateau_max_decreases`` times.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from vggnet.config import TrainConfig


@dataclass
class PlateauState:
    best: float = -1.0
    bad_epochs: int = 0
    decreases: int = 0

    def observe(self, val_top1: float) -> bool:
        """Record one validation; True when it beats the best so far (what early stopping counts)."""
        if val_top1 > self.best + 1e-4:
            self.best, self.bad_epochs = val_top1, 0
            return True
        self.bad_epochs += 1
        return False

    def update(self, val_top1: float, cfg: TrainConfig) -> bool:
        """Record one validation; True when the LR was just divided by 10."""
        if self.observe(val_top1):
            return False
        if self.bad_epochs >= cfg.plateau_patience and self.decreases < cfg.plateau_max_decreases:
            self.decreases += 1
            self.bad_epochs = 0
            return True
        return False

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, total_steps: int, steps_per_epoch: int, cfg: TrainConfig, plateau: PlateauState) -> float:
    """The base learning rate for optimizer step ``step`` (0-based)."""
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "plateau":
        return cfg.lr * 0.1 ** plateau.decreases
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** (step // max(1, cfg.step_size * steps_per_epoch))
    if step < warmup:  # onecycle and cosine warm up linearly from lr/10
        return cfg.lr * (0.1 + 0.9 * step / warmup)
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (1 - progress)  # onecycle: linear anneal to zero
