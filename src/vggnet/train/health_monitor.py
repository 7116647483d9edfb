"""The training-health monitor: cheap checks during training that say, in plain words and
in the first minute, when a run is not learning (the problems of the seed notes).

Every step: a loss cliff (the loss jumps to k times its running average, or is not finite),
tracked on the device with no host sync. Every ``every`` steps: per weight layer the
activation std, the dead-ReLU share, the gradient norm and the update-to-weight ratio.
Every validation: the share of the most predicted class and the prediction entropy (collapse
onto one class), and accuracy stuck at chance while the training loss goes down.

Each finding is an event ``{"event": kind, "step", "epoch", "message", "fix", ...}`` passed to
``log`` (the trainer writes them to metrics.jsonl) and printed once per kind.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

DEAD = 0.5  # share of a layer's ReLU units silent for a whole batch
LARGE_UPDATE = 0.5  # one step moves a layer's weights by half their norm (healthy: ~1e-3; a
# small-init last layer moves ~0.2 in its first steps)
CLIFF_WARMUP = 10  # steps of running average before cliffs are judged
CLIFF_MIN_JUMP = 0.25  # and the jump must exceed this share of log(C) (noise near zero loss)
EMA = 0.98  # running-average decay (about 50 steps)
COLLAPSE_SHARE = 0.5  # most predicted class share that counts as collapse (and 2x the true share)
COLLAPSE_ENTROPY = 0.5  # prediction entropy below this share of the labels' entropy
PATIENCE = 2  # validations in a row (collapsed, or at chance) before the event: early
# validations of a BN net, before its running statistics settle, can look collapsed once


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module | None]]:
    """(name, conv/linear, the ReLU that follows it or None) in forward order."""
    named = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    out = []
    for i, (name, module) in enumerate(named):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            relu = None
            for _, nxt in named[i + 1:]:
                if isinstance(nxt, (nn.Conv2d, nn.Linear)):
                    break
                if isinstance(nxt, nn.ReLU):
                    relu = nxt
                    break
            out.append((name, module, relu))
    return out


def print_event(record: dict[str, Any]) -> None:
    """Print an event in plain language (other records are ignored)."""
    if "event" not in record:
        return
    where = f"epoch {record['epoch']}, " if record.get("epoch") is not None else ""
    print(f"[health] {where}step {record['step']}: {record['message']}\n"
          f"[health]   fix: {record['fix']}", file=sys.stderr, flush=True)


class Monitor:
    """Hooks for a training loop: before_step / after_backward / after_step every step,
    on_validation after each validation. Costs nothing on steps that are not sampled
    beyond a few scalar ops on the device."""

    def __init__(self, model: nn.Module, *, num_classes: int, every: int = 100, cliff_factor: float = 3.0,
                 log: Callable[[dict], None] = print_event):
        self.model, self.num_classes, self.every = model, num_classes, every
        self.cliff_factor, self.log = cliff_factor, log
        self.layers = weight_layers(model)
        self.events: list[dict] = []
        self.epoch: int | None = None
        self._printed: set[str] = set()
        self._hooks: list[Any] = []
        self._acts: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._grads: dict[str, torch.Tensor] = {}
        self._weights: dict[str, torch.Tensor] = {}
        self._avg: torch.Tensor | None = None  # running average of the loss, on the loss's device
        self._seen = 0
        self._cliff: torch.Tensor | None = None  # [step, loss, average] of the first cliff; step -1 = none
        self._at_chance = 0
        self._collapsed = 0

    # what a checkpoint keeps, so that a resumed run emits the events an uninterrupted one does
    STATE = ("epoch", "_printed", "_avg", "_seen", "_cliff", "_at_chance", "_collapsed")

    def state_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.STATE}
        out["_printed"] = sorted(self._printed)
        return {k: (v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in out.items() if v is not None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.STATE:
            if name in state:
                value = state[name]
                if isinstance(value, torch.Tensor) and self._weights_device() is not None:
                    value = value.to(self._weights_device())
                setattr(self, name, set(value) if name == "_printed" else value)

    def _weights_device(self) -> torch.device | None:
        return next((p.device for p in self.model.parameters()), None)

    def sampled(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    # ------------------------------------------------------------------ training steps

    def before_step(self, step: int) -> None:
        if not self.sampled(step):
            return
        self._acts.clear()
        for name, module, relu in self.layers:
            if relu is not None:
                self._hooks.append(relu.register_forward_hook(self._watch(name)))

    def _watch(self, name: str) -> Callable:
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            out = out.detach()
            dims = [0] + list(range(2, out.ndim))
            self._acts[name] = ((out.amax(dim=dims) <= 0).float().mean(), out.float().std())

        return hook

    def after_backward(self, step: int) -> None:
        if not self.sampled(step):
            return
        self._remove_hooks()
        for name, module, _ in self.layers:
            if module.weight.grad is not None:
                self._grads[name] = module.weight.grad.detach().float().norm()
                self._weights[name] = module.weight.detach().clone()

    def after_step(self, step: int, loss: float | torch.Tensor) -> list[dict]:
        """Track the loss; on sampled steps also log the layer statistics. Returns new events."""
        self._track_loss(step, loss)
        events: list[dict] = []
        if not isinstance(loss, torch.Tensor) or self.sampled(step):
            events += self._check_cliff()
        if self.sampled(step):
            self._remove_hooks()
            events += self._sample(step)
        return events

    def _track_loss(self, step: int, loss: float | torch.Tensor) -> None:
        loss = loss.detach().float().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        if self._avg is None:
            self._avg, self._cliff = loss.clone(), torch.tensor([-1.0, 0.0, 0.0], device=loss.device)
        finite = torch.isfinite(loss)
        if self._seen >= CLIFF_WARMUP:
            jump = self.cliff_factor * self._avg
            jump = torch.maximum(jump, self._avg + CLIFF_MIN_JUMP * math.log(self.num_classes))
            is_cliff = (~finite | (loss > jump)) & (self._cliff[0] < 0)
            record = torch.stack([torch.full_like(loss, step), loss, self._avg])
            self._cliff = torch.where(is_cliff, record, self._cliff)
        self._seen += 1
        rate = max(1.0 / self._seen, 1.0 - EMA)
        self._avg = torch.where(finite, self._avg + rate * (loss - self._avg), self._avg)

    def _check_cliff(self) -> list[dict]:
        if self._cliff is None:
            return []
        at, loss, avg = self._cliff.tolist()
        if at < 0:
            return []
        self._cliff.fill_(-1.0)
        if math.isfinite(loss):
            message = (f"loss cliff: the loss jumped to {loss:.3g}, {loss / max(avg, 1e-12):.1f}x its running "
                       f"average {avg:.3g}")
        else:
            message = f"loss cliff: the loss became {loss} (running average {avg:.3g})"
        return [self._emit("loss_cliff", int(at), message, "lower train.lr (by 3-10x), add warm-up "
                           "(train.warmup_epochs=1) or clip gradients (train.grad_clip=1)",
                           loss=loss, running_average=avg)]

    def _sample(self, step: int) -> list[dict]:
        names, values = [], []
        for name, module, _ in self.layers:
            dead, std = self._acts.get(name, (None, None))
            grad = self._grads.get(name)
            update = None
            if name in self._weights:
                before = self._weights[name]
                update = (module.weight.detach() - before).float().norm() / before.float().norm().clamp_min(1e-30)
            for key, value in (("dead", dead), ("act_std", std), ("grad_norm", grad), ("update_ratio", update)):
                if value is not None:
                    names.append((name, key))
                    values.append(value.reshape(()).float())
        self._grads.clear()
        self._weights.clear()
        self._acts.clear()
        if not values:
            return []
        flat = torch.stack([v.to(values[0].device) for v in values]).tolist()  # the one host sync
        stats: dict[str, dict[str, float]] = {}
        for (name, key), value in zip(names, flat):
            stats.setdefault(name, {})[key] = value
        self._log({"health": stats, "step": step, "epoch": self.epoch})
        events = []
        dead = {n: s["dead"] for n, s in stats.items() if s.get("dead", 0) > DEAD}
        if dead:
            worst = max(dead, key=dead.get)
            events.append(self._emit(
                "dead_relus", step, f"dead ReLUs: {100 * dead[worst]:.0f}% of the units in {worst} output 0 for "
                f"every image of the batch ({len(dead)} layer(s) over {100 * DEAD:.0f}%); they get no gradient",
                "lower train.lr, use model.batch_norm=true, or model.init=kaiming", layers=dead))
        # the first steps move a small-init last layer fast (and warm-up handles it): judge after CLIFF_WARMUP
        large = {n: s["update_ratio"] for n, s in stats.items()
                 if s.get("update_ratio", 0) > LARGE_UPDATE and self._seen > CLIFF_WARMUP}
        if large:
            worst = max(large, key=large.get)
            events.append(self._emit(
                "large_updates", step, f"large updates: one step changed {worst}'s weights by "
                f"{100 * large[worst]:.0f}% of their norm (healthy is about 0.1%)",
                "lower train.lr or set train.grad_clip=1", layers=large))
        return events

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    # ------------------------------------------------------------------ validation

    def on_validation(self, epoch: int, step: int, logits_or_preds: torch.Tensor, labels: torch.Tensor,
                      train_loss_history: list[float]) -> list[dict]:
        """Collapse onto one class and plateaus at chance, from one validation's outputs."""
        self.epoch = epoch
        events = self._check_cliff()
        preds = logits_or_preds.argmax(1) if logits_or_preds.ndim == 2 else logits_or_preds
        preds, labels = preds.detach().long().flatten().cpu(), labels.detach().long().flatten().cpu()
        n, c = len(labels), self.num_classes
        if n == 0:
            return events
        pred_share = torch.bincount(preds, minlength=c).double() / n
        label_share = torch.bincount(labels, minlength=c).double() / n
        top = float(pred_share.max())
        top_class = int(pred_share.argmax())
        entropy, label_entropy = _entropy(pred_share), _entropy(label_share)
        accuracy = float((preds == labels).double().mean())
        collapsed = c > 1 and (top > max(COLLAPSE_SHARE, 2 * float(label_share.max()))
                               or entropy < COLLAPSE_ENTROPY * label_entropy)
        self._collapsed = self._collapsed + 1 if collapsed else 0
        if self._collapsed >= PATIENCE:
            used = int((pred_share > 0.01).sum())
            events.append(self._emit(
                "collapse", step, f"collapse: {100 * top:.0f}% of the validation images are predicted as class "
                f"{top_class} and only {used} of {c} classes are predicted more than 1% of the time "
                f"(prediction entropy {entropy:.2f} vs {label_entropy:.2f} for the labels)",
                "check the labels and class balance, add BatchNorm (model.batch_norm=true), use model.init=kaiming, "
                "or lower train.lr", top_class=top_class, top_share=top, entropy=entropy))
        chance = float(label_share.max())
        margin = max(0.5 / c, 3 * math.sqrt(chance * (1 - chance) / n))
        self._at_chance = self._at_chance + 1 if accuracy <= chance + margin else 0
        if self._at_chance == PATIENCE:
            falling = len(train_loss_history) >= 2 and train_loss_history[-1] < train_loss_history[0]
            trend = "the training loss goes down but" if falling else "the training loss is flat and"
            events.append(self._emit(
                "plateau_at_chance", step, f"plateau at chance: {trend} validation accuracy stays at "
                f"{100 * accuracy:.1f}% (chance is {100 * chance:.1f}%) for {self._at_chance} validations; "
                "the net is learning the class frequencies, not the images",
                "run `vggnet diagnose` on this config; use model.batch_norm=true or model.init=kaiming; "
                "check that images and labels line up", accuracy=accuracy, chance=chance))
        return events

    # ------------------------------------------------------------------ output

    def _emit(self, kind: str, step: int, message: str, fix: str, **extra: Any) -> dict:
        event = {"event": kind, "step": step, "epoch": self.epoch, "message": message, "fix": fix, **extra}
        self.events.append(event)
        self._log(event)
        if kind not in self._printed:
            self._printed.add(kind)
            print_event(event)
        return event

    def _log(self, record: dict) -> None:
        if self.log is not print_event:  # print_event itself is called once per kind by _emit
            self.log(record)


def _entropy(share: torch.Tensor) -> float:
    p = share[share > 0]
    return max(0.0, float(-(p * p.log()).sum()))
