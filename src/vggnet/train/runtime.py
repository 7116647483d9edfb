"""What a run needs around the loop: the model it builds, its optimizer, the preprocessing its
weights carry, its default directory, Ctrl-C handling and the report at the end."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vggnet.data import augment
from vggnet.model.init import pre_initialise
from vggnet.model.vgg import VGG, build_model
from vggnet.weights.native import load_weights
from vggnet.config import RunConfig, TrainConfig


def default_out_dir(cfg: RunConfig) -> Path:
    if cfg.name:
        return Path("runs") / cfg.name
    bn = "-bn" if cfg.model.batch_norm else ""
    return Path("runs") / f"{cfg.data.name}-{cfg.model.name}{bn}-s{cfg.seed}"


def preprocessing(cfg: RunConfig, stats: augment.Stats, channels: int) -> dict[str, Any]:
    """What a set of weights expects of its input; travels in model.safetensors."""
    d = cfg.data
    return {"dataset": d.name, "channels": channels, "image_size": d.image_size, "scale": d.scale,
            "test_scale": d.test_scale, "pad": d.pad, "normalize": d.normalize, "stats": stats.to_dict()}


def make_model(cfg: RunConfig, num_classes: int, channels: int) -> VGG:
    m = cfg.model
    model = build_model(m.name, num_classes=num_classes, batch_norm=m.batch_norm, head=m.head,
                        in_channels=channels, width=m.width, dropout=m.dropout, init=m.init, seed=cfg.seed,
                        box_head=m.box_head)
    if m.pre_initialise:
        pre_initialise(model, load_weights(m.pre_initialise))
    if cfg.init_from:
        load_weights(cfg.init_from, model)
    return model


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Keep the memory a CPU training step frees for the next step instead of handing it back.

    glibc serves large blocks with mmap and trims the heap's free top, so each step's
    activations come back as fresh pages: thousands of page faults a step, which both cores
    then wait on. The PyTorch CPU tuning guide's answer is another allocator (jemalloc,
    tcmalloc); glibc's own knobs give the same here: blocks up to 32 MiB (its maximum) from the
    heap, and no trimming. The peak barely moves (the default run: 1.30 GB against 1.18-1.28
    GB); the process keeps it until it exits. Linux with glibc only; elsewhere nothing changes. True when applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 64 << 20)))


def make_optimizer(params: Any, t: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov if asked) or Adam with its fused kernel where this torch has one
    for these tensors (CPU since torch 2.4, CUDA): one pass over the weights instead of several
    per tensor, 12 ms instead of 154 ms per step for a full-width VGG-A on 2 CPU cores
    (BENCHMARKS.md). Where there is none, the multi-tensor (foreach) implementation."""
    def make(**impl: bool) -> torch.optim.Optimizer:
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **impl)
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                               nesterov=t.nesterov and t.momentum > 0, **impl)

    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or torch
        return make(foreach=True)


class Interrupt:
    """SIGINT (Ctrl-C) or SIGTERM (docker stop, Slurm, Kubernetes) finishes the current step,
    then the loop saves and stops cleanly. A second one stops at once, except inside
    `shield()` (the epoch-end save), which it never cuts in half."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.hit = False
        self._shielded = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupt:
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, *_: Any) -> None:
        if self.hit and not self._shielded:
            raise KeyboardInterrupt
        self.hit = True

    @contextmanager
    def shield(self) -> Iterator[None]:
        """Signals inside only set the flag; the caller checks it afterwards."""
        before, self._shielded = self._shielded, True
        try:
            yield
        finally:
            self._shielded = before

    def __exit__(self, *_: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def render_report(out: Path) -> None:
    """report.html for the run (imported here: matplotlib only when a run ends)."""
    from vggnet.report.run import render_run

    render_run(out)
