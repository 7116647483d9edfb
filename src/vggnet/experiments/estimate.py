"""How long a sweep will take on this kind of machine, printed by `vggnet sweep --dry-run`.

A cell's time is modelled as

    startup + steps x STEP_OVERHEAD_S + MACs / (MACS_PER_S x threads / cores)

where MACs counts training (3 x forward: forward + backward) over every epoch, validation
each epoch, and the test protocols' views. The constants are calibrated on the measurements
in README.md and docs/RESULTS.md (2-core AVX-512 VMs, torch 2.14):

- MACS_PER_S: the default run of November 2026 (VGG-A-BN, width 0.5, 32 px, batch 128, bf16
  autocast) trained at ~1,400 images/s on both cores: 1,400 x 3 x 39.7 MMAC = 1.7e11 MAC/s.
- MACS_PER_S_FP32: the paper's fp32 (`train.amp: false`), fitted to the medium pilot of
  paper_ablations (docs/RESULTS.md 3b): its nine uninterrupted runs (A, B, C, D, E at width 0.25,
  10 epochs of 54,000 images, every protocol on 1,000 test images; one thread each, two side by
  side) took 8,215 s together: 7.1e10 MAC/s on both cores. Deeper nets run a little faster per
  MAC than A (D: 1.05x the model, A: 1.26x), so the sum is right and single cells are +-20%.
- LRN_FACTOR: LRN is memory-bound work the MAC count misses: the pilot's A-LRN took 100 s per
  epoch against A's 46 s.
- STEP_OVERHEAD_S, STARTUP_S and VIEW_OVERHEAD_S: the small budgets (fp32, width 0.125, ~2.4
  MMAC per image), fitted with the fp32 rate above: init-small's 6.3 min and paper_ablations-
  small's 21 min with --jobs 2 (45 and 56 runs, 33,210 and 41,328 SGD steps, 1.35M and 8.9M
  test views) leave ~6 s per process (import, data), ~1 ms per step and ~0.12 ms per test view
  (crops, rescaling, small batches) beyond the MACs.
- DATA_FACTOR: datasets whose views are built image by image in Python, with work the model
  misses (box targets, the box nets' multi-scale test): loc_ablations-small's seed 0 took 495 s
  of cell time (285 s with --jobs 2) against 143 s modelled, so fashion-mnist-loc runs count
  3.5x (the classifier 1.6x, the box nets 2.9-5.2x; the sweep's total is right).

`jobs` cells run side by side on `cores` cores; the sweep's wall time is the summed cell time
divided by `jobs` (dependencies ignored: they stall a sweep only at its start). Early stopping
makes the epoch count unknown before the run: the estimate gives the bound (every run to its
last epoch) and, separately, the time if runs stop at the stated `stop_epoch`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from vggnet.config import RunConfig
from vggnet.experiments.spec import Cell, Spec, cell_config

MACS_PER_S = 1.7e11  # both cores of the reference machine, bf16 autocast conv training
MACS_PER_S_FP32 = 7.1e10  # the same in fp32
DATA_FACTOR = {"fashion-mnist-loc": 3.5}
LRN_FACTOR = 2.2  # a net with LRN layers (A-LRN) against the same net without
STEP_OVERHEAD_S = 0.001  # Python, optimizer and data per SGD step, independent of width
STARTUP_S = 6.0  # process start, torch import, dataset load
VIEW_OVERHEAD_S = 1.2e-4  # per test view beyond its MACs (crops, rescaling, small batches)
TRAIN_SIZES = {"fashion-mnist": 60_000, "mnist": 60_000, "cifar10": 50_000, "cifar100": 50_000}
TEST_SIZES = {"fashion-mnist": 10_000, "mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}
# Forward passes per test image for each protocol (dense and centre with the mirror image).
VIEWS = {"centre": 1, "dense": 2, "multi_scale": 6, "multi_crop": 150, "fusion": 156}


@functools.lru_cache(maxsize=None)
def forward_macs(name: str, batch_norm: bool, width: float, size: int, num_classes: int = 10) -> int:
    """Multiply-accumulates of one forward pass at `size` px (gap head, one input channel)."""
    from vggnet.model.vgg import build_model, count_macs

    model = build_model(name, num_classes=num_classes, batch_norm=batch_norm, head="gap", in_channels=1,
                        width=width, init=None)
    return count_macs(model, size)


@dataclass
class CellEstimate:
    cell: str
    steps: int
    seconds: float  # to the last epoch
    seconds_stopped: float  # if early stopping ends the run at its stop epoch


def _images(cfg: RunConfig) -> tuple[int, int, int]:
    """(train, val, test) image counts of a run."""
    total = cfg.data.subset or TRAIN_SIZES.get(cfg.data.name, cfg.data.num_train)
    val = int(round(total * cfg.data.val_fraction))
    test = cfg.eval.limit or TEST_SIZES.get(cfg.data.name, cfg.data.num_test)
    return total - val, val, test


def cell_seconds(cfg: RunConfig, *, jobs: int = 2, cores: int = 2, epochs: int | None = None) -> tuple[int, float]:
    """(SGD steps, seconds) of one run of `cfg` trained for `epochs` (default: all of them)."""
    train, val, test = _images(cfg)
    epochs = cfg.train.epochs if epochs is None else min(epochs, cfg.train.epochs)
    size = cfg.data.image_size  # jittered S trains on crops of this size; larger test Q are not modelled
    macs = forward_macs(cfg.model.name, cfg.model.batch_norm, cfg.model.width, size)
    steps = -(-train // cfg.train.batch_size) * epochs
    if cfg.train.max_steps:
        steps = min(steps, cfg.train.max_steps)
    test_views = sum(VIEWS.get(p, 2) for p in cfg.eval.protocols if p != "fusion" or
                     not {"multi_scale", "multi_crop"} <= set(cfg.eval.protocols))
    total_macs = macs * (3 * steps * cfg.train.batch_size + val * epochs + test * test_views)
    share = max(1, cores // jobs) / cores
    rate = MACS_PER_S if cfg.train.amp else MACS_PER_S_FP32
    slow = LRN_FACTOR if "LRN" in cfg.model.name else 1.0
    work = steps * STEP_OVERHEAD_S + test * test_views * VIEW_OVERHEAD_S + slow * total_macs / (rate * share)
    return steps, STARTUP_S + DATA_FACTOR.get(cfg.data.name, 1.0) * work


def estimate(spec: Spec, cells: list[Cell], *, jobs: int = 2, cores: int | None = None,
             stop_epoch: int | None = None) -> tuple[list[CellEstimate], float, float]:
    """Per-cell estimates and the sweep's wall time in seconds (to the last epoch, and stopped
    at `stop_epoch` for runs with early stopping), with `jobs` cells side by side."""
    cores = cores or os.cpu_count() or 1
    out = []
    for cell in cells:
        cfg = cell_config(spec, cell)
        steps, seconds = cell_seconds(cfg, jobs=jobs, cores=cores)
        stopped = seconds
        if stop_epoch and cfg.train.early_stop_patience:
            stopped = cell_seconds(cfg, jobs=jobs, cores=cores, epochs=stop_epoch)[1]
        out.append(CellEstimate(cell.id, steps, seconds, stopped))
    per_job = max(1, jobs)
    return out, sum(e.seconds for e in out) / per_job, sum(e.seconds_stopped for e in out) / per_job


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
