"""The localisation net's training loop (paper Appendix A; the pieces are train/localisation.py).

Everything random is a function of (seed, epoch, image index): the epoch's order of (seed,
epoch), each training view of (seed, epoch, index), so a resumed run, and one spread over
several processes, draw the same views as one that ran straight through. Validation each
epoch: the localisation error with the ground-truth class on the val split's centre views
(what picks the best weights, model.safetensors). At the end the best weights are tested
(train/localisation.evaluate_localisation).

Runs resume exactly like the classification Trainer's: checkpoints/last.pt (checksummed, with
the prev.pt fallback; train/checkpoint.py) at each epoch end, every ``train.checkpoint_minutes``
and on Ctrl-C/SIGTERM (train/runtime.Interrupt; a second signal cannot cut a save in half);
run.json's fingerprint, the lock and the finished-run refusal are train/trainer.fit's
(train/rundir.py), which calls `fit_localisation`. Under torchrun each process takes a disjoint
share of every global batch (DDP averages the gradients) and of the val split; rank 0 writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vggnet.config import RunConfig, dump
from vggnet.data import augment, sources
from vggnet.errors import ConfigError, TrainingError
from vggnet.eval import localisation as L
from vggnet.eval.protocols import write_eval
from vggnet.model.vgg import VGG
from vggnet.train import checkpoint, distributed, rundir
from vggnet.train.localisation import (device_of, euclidean_loss, evaluate_localisation, init_from_classifier,
                                      view_batch)
from vggnet.train.resumable import Resumable
from vggnet.train.runinfo import run_info
from vggnet.train.runtime import Interrupt, make_model, make_optimizer, preprocessing, render_report
from vggnet.train.schedule import PlateauState, lr_at
from vggnet.weights.native import load_weights, save_weights


@torch.no_grad()
def val_error(model: VGG, split: sources.Split, cfg: RunConfig, stats: augment.Stats, channels: int,
              ctx: distributed.Context) -> float:
    """Ground-truth-class localisation error on the centre views of ``split`` (1 box each); each
    process scores every world_size-th image and the counts are summed."""
    model.eval()
    wrong, size = 0, cfg.data.image_size
    mine = list(range(ctx.rank, len(split), ctx.world_size))
    for start in range(0, len(mine), cfg.eval.batch_size):
        idx = mine[start:start + cfg.eval.batch_size]
        x, target, labels = view_batch(split, idx, cfg, None, stats, channels)
        pred = L.to_corners(model.boxes(model(x.to(device_of(model))), labels).float().cpu(), size, size)
        gt = L.to_corners(target, size, size)
        wrong += sum(not bool(L.correct(labels[i:i + 1], pred[i:i + 1], labels[i:i + 1], gt[i:i + 1]).any())
                     for i in range(len(idx)))
    model.train()
    wrong, n = distributed.all_sum([float(wrong), float(len(mine))], ctx)
    return wrong / max(1.0, n)


def _freeze(model: VGG, finetune: str) -> list[torch.nn.Parameter]:
    if finetune == "fc":
        for p in model.features.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def fit_localisation(cfg: RunConfig, out: Path, *, resume: bool = False,
                     callbacks: tuple = ()) -> Any:  # trainer.RunResult (imported late: avoids a cycle)
    """Train the box net of ``cfg`` into ``out``, resuming its checkpoint when ``resume``; test it
    (eval.json, boxes.png, report.html). trainer.fit calls it after checking the run directory."""
    ctx = distributed.setup(cfg.device)
    try:
        return LocalisationRun(cfg, out, ctx, callbacks).fit(resume)
    finally:
        distributed.teardown(ctx)


class LocalisationRun(Resumable):
    """One box-net run: the state its checkpoint captures, the loop, the test at the end."""

    def __init__(self, cfg: RunConfig, out: Path, ctx: distributed.Context,
                 callbacks: tuple[Callable[[Any, dict], None], ...] = ()) -> None:
        self.cfg, self.out, self.ctx, self.callbacks = cfg, out, ctx, list(callbacks)
        t = cfg.train
        if t.batch_size % ctx.world_size:
            raise ConfigError(f"train.batch_size={t.batch_size} must divide evenly over {ctx.world_size} processes")
        torch.manual_seed(cfg.seed)
        self.ds = sources.get(cfg.data, seed=cfg.seed)
        if self.ds.train.boxes is None:
            raise ConfigError(f"data.name={cfg.data.name} has no boxes; localisation needs fashion-mnist-loc, "
                              "ilsvrc-loc or voc-loc")
        self.channels = self.ds.channels if self.ds.in_memory else 3
        self.stats = augment.compute_stats(self.ds.train, seed=cfg.seed)
        self.model = make_model(cfg, len(self.ds.classes), self.channels)
        if cfg.loc.classifier:
            init_from_classifier(self.model, cfg.loc.classifier)
        self.model.to(ctx.device)
        params = _freeze(self.model, cfg.loc.finetune)
        self.net: nn.Module = self.model
        if ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        self.optimizer = make_optimizer(params, t)
        self.steps_per_epoch = max(1, len(self.ds.train) // t.batch_size)
        self.total = min(t.epochs * self.steps_per_epoch, t.max_steps or 10**12)
        self.meta = {"preprocessing": preprocessing(cfg, self.stats, self.channels), "classes": self.ds.classes}
        self.epoch, self.batch, self.step, self.best = 0, 0, 0, -1.0  # epochs done, batches of the current one
        self.loss_sum, self.loss_steps = 0.0, 0  # the current epoch's, on this process
        self.plateau = PlateauState()
        self.metrics: list[dict[str, Any]] = []
        self.started = time.monotonic()  # minus the wall time of the run before a resume
        self.last_save = time.monotonic()
        self.interrupt = Interrupt()
        self.resumed = False

    # ---- state ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "batch": self.batch, "step": self.step, "best_val": self.best, "plateau": self.plateau.to_dict(),
                "loss": [self.loss_sum, self.loss_steps], "wall": time.monotonic() - self.started,
                "rng": checkpoint.rng_state(), "metrics_lines": len(self.metrics)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch, self.step, self.best = state["epoch"], state["batch"], state["step"], state["best_val"]
        self.plateau = PlateauState(**state["plateau"])
        self.loss_sum, self.loss_steps = float(state["loss"][0]), int(state["loss"][1])
        self.started = time.monotonic() - float(state["wall"])
        checkpoint.set_rng_state(state["rng"])

    # ---- the loop -------------------------------------------------------------------------
    def _stop_asked(self) -> bool:
        """Ctrl-C/SIGTERM seen (by rank 0, for all ranks: they stop at the same step)."""
        return distributed.broadcast_flag(self.interrupt.hit, self.ctx)

    def _order(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(sources.seed_of("loc-order", self.cfg.seed, epoch))
        return torch.randperm(len(self.ds.train), generator=g).tolist()

    def train_epoch(self) -> None:
        """Steps from self.batch to the epoch's end (or max_steps, or a stop request)."""
        t, ctx, device = self.cfg.train, self.ctx, self.ctx.device
        order = self._order(self.epoch)
        while self.batch < self.steps_per_epoch and self.step < self.total:
            if self._stop_asked():
                return
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(self.step, self.total, self.steps_per_epoch, t, self.plateau)
            mine = order[self.batch * t.batch_size:(self.batch + 1) * t.batch_size][ctx.rank::ctx.world_size]
            x, target, labels = view_batch(self.ds.train, mine, self.cfg, self.epoch, self.stats, self.channels)
            loss = euclidean_loss(self.model.boxes(self.net(x.to(device)), labels.to(device)), target.to(device))
            if not torch.isfinite(loss):
                raise TrainingError(f"the Euclidean loss is {float(loss)} at step {self.step}; lower train.lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.loss_sum += float(loss.detach())
            self.loss_steps += 1
            self.batch += 1
            self.step += 1
            if time.monotonic() - self.last_save > t.checkpoint_minutes * 60:
                self.save_checkpoint()

    def end_epoch(self) -> None:
        """Validate, log, keep the best weights, save the checkpoint."""
        t = self.cfg.train
        val = 1.0 - val_error(self.model, self.ds.val, self.cfg, self.stats, self.channels, self.ctx)
        self.plateau.update(val, t)
        loss_sum, steps = distributed.all_sum([self.loss_sum, float(self.loss_steps)], self.ctx)
        record = {"epoch": self.epoch + 1, "step": self.step, "train_loss": loss_sum / max(1.0, steps),
                  "val_top1": val, "lr": self.optimizer.param_groups[0]["lr"],
                  "wall_s": round(time.monotonic() - self.started, 1)}
        self.metrics.append(record)
        if self.ctx.is_main:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            if t.progress:
                print(f"epoch {record['epoch']}/{t.epochs}: loss {record['train_loss']:.4f}, val loc error (GT class) "
                      f"{100 * (1 - val):.1f}%", flush=True)
        for callback in self.callbacks:
            callback(self, record)
        if val > self.best:
            self.best = val
            if self.ctx.is_main:
                save_weights(self.model, self.out / "model.safetensors", **self.meta)
        self.epoch += 1
        self.batch, self.loss_sum, self.loss_steps = 0, 0.0, 0
        self.save_checkpoint()

    def fit(self, resume: bool) -> Any:
        self.out.mkdir(parents=True, exist_ok=True)
        self.resumed = resume and self.resume()
        t = self.cfg.train
        if self.ctx.is_main:
            if self.resumed:
                where = (f"at epoch {self.epoch + 1}, step {self.step}" if self.epoch < t.epochs
                         else "after its last epoch, to test it")
                print(f"resuming {self.out} {where}", flush=True)
            else:
                (self.out / "metrics.jsonl").write_text("")
                dump(self.cfg, self.out / "config.yaml")
                rundir.write_run(self.out, self.cfg)
        self.model.train()
        try:
            with self.interrupt:
                while self.epoch < t.epochs and not (self.step >= self.total and self.batch == 0):
                    self.train_epoch()
                    if self._stop_asked():
                        raise KeyboardInterrupt
                    with self.interrupt.shield():  # a second Ctrl-C waits for the epoch's save
                        self.end_epoch()
                    if self._stop_asked():
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            with self.interrupt.shield():
                self.save_checkpoint()
            if self.ctx.is_main:
                print(f"\ninterrupted; saved. Resume with: vggnet train --out {self.out} --resume", flush=True)
            raise
        return self.finish()

    def finish(self) -> Any:
        from vggnet.train.trainer import RunResult

        result = RunResult(self.out, self.best, metrics=self.metrics)
        if self.ctx.is_main:
            best = load_weights(self.out / "model.safetensors").to(self.ctx.device)
            result.test = evaluate_localisation(best, self.ds, self.cfg, self.stats, self.channels, self.out)
            write_eval(result.test, self.out / "eval.json")
            rundir.write_run(self.out, self.cfg, finished=True,
                             info=run_info(resumed=self.resumed, device=str(self.ctx.device)))
            render_report(self.out)
        distributed.barrier(self.ctx)
        return result


