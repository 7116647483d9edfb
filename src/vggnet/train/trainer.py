"""The training loop: the paper's recipe (SGD, momentum, weight decay, plateau LR) and the
seed notes' variants, resumable bit-exactly, with bf16/channels_last speed and DDP.

`fit(cfg, out_dir)` writes a run directory (ARCHITECTURE.md): config.yaml, metrics.jsonl,
TensorBoard events, checkpoints/last.pt, model.safetensors (best validation accuracy; without
validation, the last epoch's), eval.json and report.html.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vggnet.data import augment, loaders, sources
from vggnet.errors import ConfigError, TrainingError
from vggnet.model.vgg import VGG
from vggnet.weights.native import load_weights, save_weights
from vggnet.train import checkpoint, distributed, health, resources, rundir
from vggnet.config import RunConfig, dump
from vggnet.train.resumable import Resumable
from vggnet.train.runinfo import run_info
from vggnet.train.runtime import (Interrupt, default_out_dir, keep_freed_memory, make_model, make_optimizer,
                                  preprocessing, render_report)
from vggnet.train.schedule import PlateauState, lr_at

MAX_ROLLBACKS = 3


@dataclass
class RunResult:
    out_dir: Path
    best_val_top1: float | None  # None: trained without validation (data.val_fraction=0)
    test: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    skipped: dict[Path, str] = field(default_factory=dict)  # unreadable image files, with why (folder sets)


class Trainer(Resumable):
    """One run. Holds the state that a checkpoint captures; `fit()` is the public entry."""

    def __init__(self, cfg: RunConfig, out_dir: Path, model: VGG | None, param_groups: list[dict] | None,
                 callbacks: tuple = ()) -> None:
        self.cfg, self.out = cfg, out_dir
        self.ctx = distributed.setup(cfg.device)
        self.device = self.ctx.device
        torch.manual_seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cpu":
            keep_freed_memory()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.ds = sources.get(cfg.data, seed=cfg.seed)
        self.stats = self._stats(model)
        self.channels = model.config["in_channels"] if model is not None else self.ds.channels
        self.given_model = model is not None
        if model is None:  # refuse a model that cannot fit before allocating it
            resources.check_fits(cfg, len(self.ds.classes), self.channels, self.device,
                                 max(1, cfg.train.batch_size // self.ctx.world_size))
        self.model = model if model is not None else make_model(cfg, len(self.ds.classes), self.channels)
        self.model.checkpoint_activations = cfg.train.checkpoint_activations
        if self.model.config["num_classes"] != len(self.ds.classes):
            raise ConfigError(f"the model has {self.model.config['num_classes']} classes, {cfg.data.name} has "
                              f"{len(self.ds.classes)}; replace the head (vggnet finetune does)")
        self.model.to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if self.ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.train.compile:
            self.net = torch.compile(self.net)
        t = cfg.train
        if t.batch_size % self.ctx.world_size:
            raise ConfigError(f"train.batch_size={t.batch_size} must divide evenly over {self.ctx.world_size} processes")
        per_rank = t.batch_size // self.ctx.world_size
        common = dict(stats=self.stats, channels=self.channels, device=self.device, seed=cfg.seed,
                      rank=self.ctx.rank, world_size=self.ctx.world_size)
        self.train_loader = loaders.make_loader(self.ds, "train", cfg.data, train=True, batch_size=per_rank, **common)
        self.val_loader = None  # none with data.val_fraction=0 and no val split: train on every image
        if len(self.ds.val) or cfg.data.val_fraction > 0:
            self.val_loader = loaders.make_loader(self.ds, "val", cfg.data, train=False,
                                                  batch_size=cfg.eval.batch_size, **common)
        elif t.schedule == "plateau" or t.early_stop_patience is not None:
            key = "train.schedule=plateau" if t.schedule == "plateau" else "train.early_stop_patience"
            raise ConfigError(f"{key} follows validation accuracy, and data.val_fraction=0 leaves no validation "
                              f"images; set data.val_fraction above 0 or use another schedule")
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.groups = self._param_groups(param_groups)
        self.optimizer = self._optimizer()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
        self.plateau = PlateauState()
        self.early = PlateauState()
        self.epoch, self.batch, self.step = 0, 0, 0
        self.best_val, self.lr_factor, self.rollbacks = -1.0, 1.0, 0
        self.acc = self._zero_acc()  # loss sum, correct, images of the current epoch (on device: no sync)
        self.wall = 0.0
        self.stopped_early = False
        self.callbacks = list(callbacks)
        self.monitor = self._monitor()
        self.metrics: list[dict[str, Any]] = []
        self.writer = None
        self.last_save = time.monotonic()
        self.interrupt = Interrupt()  # Ctrl-C: finish the step, save, stop
        self.preflight: health.Diagnosis | None = None  # the diagnosis before step 1 (fresh runs)
        self.resumed = False  # for run.json: the report says whether the run was resumed

    # ---- set-up -------------------------------------------------------------------------
    def _stats(self, model: VGG | None) -> augment.Stats:
        """Normalisation statistics: those a pretrained model expects (fine-tuning), else the
        training set's. The colour-shift PCA always comes from the training set."""
        pre = (getattr(model, "metadata", None) or {}).get("preprocessing") or {}
        if "stats" not in pre:
            return augment.compute_stats(self.ds.train, seed=self.cfg.seed)
        stats = augment.Stats.from_dict(pre["stats"])
        if self.cfg.data.colour_shift > 0 and stats.eigval is None:
            pca = augment.compute_stats(self.ds.train, seed=self.cfg.seed)
            stats.eigval, stats.eigvec = pca.eigval, pca.eigvec
        return stats

    def _param_groups(self, groups: list[dict] | None) -> list[dict]:
        if groups is None:
            groups = [{"params": list(self.model.parameters())}]
        out = []
        for g in groups:
            params = [p for p in g["params"] if p.requires_grad]
            if params:
                out.append({"params": params, "lr_scale": float(g.get("lr_scale", 1.0))})
        if not out:
            raise ConfigError("no trainable parameters: every parameter is frozen")
        return out

    def _optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.groups, self.cfg.train)

    def _monitor(self) -> Any:
        if not self.cfg.train.health_every:
            return None
        try:
            from vggnet.train.health import Monitor
        except ImportError:
            return None
        return Monitor(self.model, num_classes=len(self.ds.classes), every=self.cfg.train.health_every,
                       log=self._event)

    def _autocast(self) -> Any:
        if not self.cfg.train.amp:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ---- state ----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "batch": self.batch, "step": self.step, "best_val": self.best_val,
                "lr_factor": self.lr_factor, "rollbacks": self.rollbacks, "acc": self.acc.tolist(), "wall": self.wall,
                "plateau": self.plateau.to_dict(), "early": self.early.to_dict(), "rng": checkpoint.rng_state(),
                "metrics_lines": len(self.metrics),
                "monitor": self.monitor.state_dict() if self.monitor is not None else {}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.batch, self.step = state["epoch"], state["batch"], state["step"]
        self.best_val, self.lr_factor, self.rollbacks = state["best_val"], state["lr_factor"], state["rollbacks"]
        self.acc, self.wall = torch.tensor(state["acc"], dtype=torch.float64, device=self.device), state["wall"]
        self.plateau, self.early = PlateauState(**state["plateau"]), PlateauState(**state["early"])
        checkpoint.set_rng_state(state["rng"])
        if self.monitor is not None and state.get("monitor"):
            self.monitor.load_state_dict(state["monitor"])

    # ---- logging --------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.append(record)
        if not self.ctx.is_main:
            return
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None and "epoch" in record and "event" not in record:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.writer.add_scalar(key, value, record["step"])

    def _event(self, event: dict[str, Any]) -> None:
        """Health events and notes: into metrics.jsonl, printed once in plain words."""
        # the epoch it happened in, numbered from 1 as in the metrics lines; the trainer's count, which a
        # resume restores (the monitor's own is the last validated epoch, and None after a resume)
        fields = {k: v for k, v in event.items() if v is not None and k != "epoch"}
        record = {"epoch": self.epoch + 1, "step": self.step, **fields}
        self._log(record)
        if self.ctx.is_main and "message" in event:
            fix = f" Fix: {event['fix']}" if event.get("fix") else ""
            print(f"[{event.get('event', 'note')}] step {self.step}: {event['message']}{fix}", flush=True)

    # ---- the loop -------------------------------------------------------------------------
    def set_lr(self) -> float:
        base = lr_at(self.step, self.total_steps, self.steps_per_epoch, self.cfg.train, self.plateau)
        lr = base * self.lr_factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def _zero_acc(self) -> torch.Tensor:
        return torch.zeros(3, dtype=torch.float64, device=self.device)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """One optimizer step -> [loss sum, correct, images] on the device; None if the loss
        was not finite (the step is skipped, the one host sync per step)."""
        t = self.cfg.train
        step = self.step
        if t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.monitor is not None:
            self.monitor.before_step(step)
        with self._autocast():
            logits = self.net(x)
            loss = self.criterion(logits.float(), y)
        if not torch.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        stats = torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                             torch.tensor(float(len(y)), dtype=torch.float64, device=loss.device)])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.monitor is not None:
            self.monitor.after_backward(step)
        if t.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.optimizer.step()
        self.step += 1
        if self.monitor is not None:
            self.monitor.after_step(step, loss.detach())
        return stats

    def check_before_training(self) -> None:
        """Refuse (exit 2) a config whose init-signal diagnosis says "will not train", unless
        train.force or the net is pre-initialised (a warning then); keep the diagnosis to name
        the cause if the loss later goes non-finite."""
        if self.given_model:
            return  # pretrained weights: the diagnosis is about random inits
        x, y = next(iter(self.train_loader.epoch(0)))
        self.preflight = health.preflight(self.model, x, y)
        refuse = distributed.broadcast_flag(self.preflight.verdict == "will not train", self.ctx)
        if refuse and (self.cfg.model.pre_initialise or self.cfg.init_from):
            # the paper's chain (3.1): B-E start from a trained A with their new layers at std0.01, which
            # shrinks the signal at step 1 however well A trained; the diagnosis warns but does not refuse
            if self.ctx.is_main:
                print(f"[preflight] warning (pre-initialised, trained anyway): {health.refusal(self.preflight)}",
                      flush=True)
        elif refuse and not self.cfg.train.force:
            raise ConfigError(health.refusal(self.preflight))

    def _nonfinite(self, good: dict[str, Any]) -> dict[str, Any]:
        where = f"epoch {self.epoch + 1}, step {self.step}"
        if self.cfg.train.on_nonfinite == "stop" or self.rollbacks >= MAX_ROLLBACKS:
            self.save_checkpoint()
            cause = "lower train.lr, set train.grad_clip, or use model.batch_norm=true"
            if self.preflight is not None and self.preflight.verdict != "healthy":
                cause = (f"the diagnosis before step 1 said {self.preflight.verdict!r} ({self.preflight.reason.split(':')[0]}"
                         f"): the init ({self.cfg.model.init}) or the inputs (data.normalize={self.cfg.data.normalize}) "
                         f"are the likely cause; {self.preflight.fixes[0] if self.preflight.fixes else cause}")
            raise TrainingError(f"non-finite loss at {where} (after {self.rollbacks} rollbacks); {cause}")
        rollbacks = self.rollbacks + 1
        self._event({"event": "nonfinite_loss", "message": f"non-finite loss at {where}; restored the state of the "
                     f"epoch's start and divided the learning rate by 10 (rollback {rollbacks} of {MAX_ROLLBACKS})",
                     "fix": "lower train.lr or set train.grad_clip"})
        position, lr_factor = (self.epoch, self.batch), self.lr_factor
        self.load_state(good)
        self.epoch, self.batch = position  # continue with the next batch, not a replay
        self.rollbacks, self.lr_factor = rollbacks, lr_factor * 0.1
        return self.state()

    def run_epoch(self) -> None:
        """Train one epoch from self.batch on (until max_steps or Ctrl-C, if sooner)."""
        self.net.train()
        good = copy.deepcopy(self.state())
        bar = self._bar()
        start, images = time.perf_counter(), 0
        timer = start  # wall-clock accounting (checkpoint saves split it)
        for x, y in self.train_loader.epoch(self.epoch, start_batch=self.batch):
            if self.step >= self.total_steps or self.interrupt.hit:
                break
            self.set_lr()
            out = self.train_step(x, y)
            self.batch += 1
            if out is None:
                good = self._nonfinite(good)
                continue
            self.acc += out
            images += len(y) * self.ctx.world_size
            if bar is not None:
                bar.update(1)
                if self.batch % 20 == 0:
                    bar.set_postfix(loss=f"{(self.acc[0] / self.acc[2]).item():.3f}",
                                    img_s=f"{images / (time.perf_counter() - start):.0f}", refresh=False)
            if time.monotonic() - self.last_save > self.cfg.train.checkpoint_minutes * 60:
                self.wall += time.perf_counter() - timer
                timer = time.perf_counter()
                self.save_checkpoint()
        if bar is not None:
            bar.close()
        self.wall += time.perf_counter() - timer

    def _print_epoch(self, record: dict[str, Any]) -> None:
        """One line per epoch that stays on screen: written above the progress bar (tqdm.write),
        plain print in log files."""
        val = "" if record["val_top1"] is None else f"val top-1 error {100 * (1 - record['val_top1']):.2f}%  "
        line = (f"epoch {record['epoch']}/{self.cfg.train.epochs}  train loss {record['train_loss']:.4f}  "
                f"{val}lr {record['lr']:.3g}  {record['wall_s'] / 60:.1f} min")
        if self.cfg.train.progress:
            from tqdm import tqdm

            tqdm.write(line)
        else:
            print(line, flush=True)

    def _bar(self) -> Any:
        if not (self.cfg.train.progress and self.ctx.is_main):
            return None
        from tqdm import tqdm

        return tqdm(total=len(self.train_loader), initial=self.batch, desc=f"epoch {self.epoch + 1}/"
                    f"{self.cfg.train.epochs}", unit="batch", leave=False, dynamic_ncols=True)

    @torch.inference_mode()
    def validate(self) -> tuple[float | None, float | None, torch.Tensor, torch.Tensor]:
        """Loss, top-1, predictions and labels on val; without validation Nones and empty tensors
        (the health monitor then checks the training loss alone)."""
        if self.val_loader is None:
            return None, None, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)
        self.net.eval()
        loss_sum, correct, n, preds, labels = 0.0, 0.0, 0.0, [], []
        for x, y in self.val_loader.epoch(0):
            if self.cfg.train.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.model(x).float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            pred = logits.argmax(1)
            correct += (pred == y).sum().item()
            n += len(y)
            preds.append(pred.cpu())
            labels.append(y.cpu())
        loss_sum, correct, n = distributed.all_sum([loss_sum, correct, n], self.ctx)
        return loss_sum / max(n, 1), correct / max(n, 1), torch.cat(preds), torch.cat(labels)

    def end_epoch(self, epoch_start_wall: float) -> bool:
        """Validate, log, save; True when training should stop (early stopping)."""
        loss_sum, correct, n = distributed.all_sum(self.acc.tolist(), self.ctx)
        val_loss, val_top1, preds, labels = self.validate()
        epoch_wall = self.wall - epoch_start_wall
        record = {"epoch": self.epoch + 1, "step": self.step, "train_loss": loss_sum / max(n, 1),
                  "train_top1": correct / max(n, 1), "val_loss": val_loss, "val_top1": val_top1,
                  "lr": self.optimizer.param_groups[0]["lr"] / self.optimizer.param_groups[0].get("lr_scale", 1.0),
                  "images_per_s": n / max(epoch_wall, 1e-9), "wall_s": self.wall}
        if self.device.type == "cuda":
            record["peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self._log(record)
        if self.ctx.is_main:
            self._print_epoch(record)
        if self.monitor is not None:
            history = [m["train_loss"] for m in self.metrics if isinstance(m.get("train_loss"), (int, float))]
            self.monitor.on_validation(self.epoch + 1, self.step, preds, labels, history)
        for callback in self.callbacks:
            callback(self, record)
        if val_top1 is None or val_top1 > self.best_val:  # without validation: the latest weights
            if val_top1 is not None:
                self.best_val = val_top1
            if self.ctx.is_main:
                save_weights(self.model, self.out / "model.safetensors", classes=self.ds.classes,
                             preprocessing=preprocessing(self.cfg, self.stats, self.channels))
        if self.cfg.train.schedule == "plateau" and self.plateau.update(val_top1, self.cfg.train):
            self._event({"event": "lr_decrease", "message": f"validation accuracy stopped improving; learning rate "
                         f"divided by 10 ({self.plateau.decreases} of {self.cfg.train.plateau_max_decreases})"})
        stop = False
        patience = self.cfg.train.early_stop_patience
        if patience is not None:  # both need validation: __init__ refuses them without
            self.early.observe(val_top1)  # epochs without improvement; the LR rule does not reset them
            stop = self.early.bad_epochs >= patience
            if stop:
                self._event({"event": "early_stop", "message": f"validation accuracy did not improve for "
                             f"{patience} epochs; stopped"})
        self.epoch += 1
        self.batch = 0
        self.acc = self._zero_acc()
        self.save_checkpoint()
        return distributed.broadcast_flag(stop, self.ctx)

    def fit(self, resume: bool) -> RunResult:
        self.out.mkdir(parents=True, exist_ok=True)
        resumed = self.resumed = resume and self.resume()
        if not resumed:
            self.check_before_training()
        if not resumed and self.ctx.is_main:
            (self.out / "metrics.jsonl").write_text("")
            dump(self.cfg, self.out / "config.yaml")
            rundir.write_run(self.out, self.cfg)
        if self.ctx.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out))
        if resumed and self.ctx.is_main:
            done = self.epoch >= self.cfg.train.epochs or (self.step >= self.total_steps and self.batch == 0)
            where = (f"after its last {'epoch' if self.epoch >= self.cfg.train.epochs else 'step'}, to evaluate it"
                     if done else f"at epoch {self.epoch + 1} of {self.cfg.train.epochs}, step {self.step}")
            print(f"resuming {self.out} {where}", flush=True)
        try:
            with self.interrupt:
                while self.epoch < self.cfg.train.epochs:
                    if self.step >= self.total_steps and self.batch == 0:
                        break  # max_steps reached, and the epoch it ended in is closed
                    epoch_start = self.wall
                    self.run_epoch()
                    if self.interrupt.hit:
                        raise KeyboardInterrupt
                    with self.interrupt.shield():  # a second Ctrl-C waits for the epoch's save
                        stop = self.end_epoch(epoch_start)
                    if stop:
                        self.stopped_early = True
                        break
                    if self.interrupt.hit:
                        raise KeyboardInterrupt
        except KeyboardInterrupt:
            with self.interrupt.shield():
                self.save_checkpoint()
            if self.ctx.is_main:
                print(f"\ninterrupted; saved. Resume with: vggnet train -c {self.out / 'config.yaml'} --out {self.out} "
                      "--resume", flush=True)
            raise
        finally:
            if self.writer is not None:
                self.writer.close()
        return self.finish()

    def skipped_images(self) -> dict[Path, str]:
        """Every image file this run skipped (training, validation, test), with why."""
        out: dict[Path, str] = {}
        for loader in (self.train_loader, self.val_loader):
            out.update(getattr(loader, "bad", {}))
        out.update(self.ds.skipped)
        return out

    def finish(self) -> RunResult:
        best_val = None if self.val_loader is None else self.best_val
        result = RunResult(self.out, best_val, metrics=self.metrics, stopped_early=self.stopped_early)
        if self.ctx.is_main and (self.out / "model.safetensors").is_file():
            best = load_weights(self.out / "model.safetensors").to(self.device)
            from vggnet.eval.protocols import evaluate, write_eval

            result.test = evaluate(best, self.ds, self.cfg, self.stats, split="test",
                                   protocols=tuple(self.cfg.eval.protocols), scales=self.cfg.eval.scales,
                                   device=self.device, limit=self.cfg.eval.limit)
            write_eval(result.test, self.out / "eval.json")
            from vggnet.eval.examples import collect_examples, write_examples
            from vggnet.eval.preprocess import Preprocessing

            prep = Preprocessing.from_config(self.cfg, self.stats, best.config["in_channels"])
            examples = collect_examples(best, self.ds, prep, device=self.device, limit=self.cfg.eval.limit,
                                        batch_size=self.cfg.eval.batch_size)
            write_examples(examples, list(self.ds.classes), self.out / "examples.safetensors")
        result.skipped = self.skipped_images()
        if self.ctx.is_main:
            info = run_info(resumed=self.resumed, device=str(self.device))
            if result.skipped:
                reasons: dict[str, int] = {}
                for why in result.skipped.values():
                    reasons[why] = reasons.get(why, 0) + 1
                info["skipped_images"] = {"count": len(result.skipped), "reasons": reasons,
                                          "files": {str(p): why for p, why in list(result.skipped.items())[:1000]}}
            rundir.write_run(self.out, self.cfg, finished=True, info=info)
            if result.test:
                render_report(self.out)
        distributed.barrier(self.ctx)
        return result


def fit(cfg: RunConfig, out_dir: str | Path | None = None, *, model: VGG | None = None,
        param_groups: list[dict] | None = None, resume: bool = False, overwrite: bool = False,
        callbacks: tuple = ()) -> RunResult:
    """Train ``cfg`` into ``out_dir`` (default runs/<name>). A directory that holds a checkpoint
    of the same run is resumed exactly where it stopped; ``resume=True`` insists on one (an error
    if none; a finished run is reported, not retrained). A finished run's directory is never
    trained into again unless ``overwrite=True`` clears it. The directory is locked meanwhile."""
    resources.check_device(cfg.device)  # before --out is created: a bad device leaves nothing behind
    out = rundir.prepare(out_dir if out_dir is not None else default_out_dir(cfg))
    with rundir.lock(out):
        rundir.clean_orphans(out)
        if overwrite:
            rundir.overwrite(out)
        state = rundir.status(out)
        if resume and state == "new":
            raise ConfigError(f"nothing to resume: {out}/checkpoints/last.pt does not exist")
        if state == "foreign" or (state == "finished" and not resume):
            rundir.refuse_existing(out, state)
        if state != "new":
            rundir.check_same_run(out, cfg)
        if state == "finished":
            return finished_result(out)
        if cfg.model.box_head is not None:  # a localisation net (Appendix A): its own loop
            from vggnet.train.localisation_run import fit_localisation

            return fit_localisation(cfg, out, resume=state == "partial", callbacks=callbacks)
        trainer = Trainer(cfg, out, model, param_groups, callbacks)
        try:
            return trainer.fit(resume=state == "partial")
        finally:
            distributed.teardown(trainer.ctx)


def finished_result(out: Path) -> RunResult:
    """A finished run as its files say (nothing is retrained or re-evaluated)."""
    from vggnet.report.rundir import read_json, read_metrics

    epochs, _ = read_metrics(out)
    best = max((e["val_top1"] for e in epochs if e.get("val_top1") is not None), default=None)
    print(f"{out} is a finished run; nothing to train (vggnet eval {out} evaluates it further)", flush=True)
    return RunResult(out, best, test=read_json(out / "eval.json"), metrics=epochs)
