"""Signal propagation at initialisation: will this net train, and if not, why and what to do.

One forward and backward pass on a real batch measures, per weight layer, the std of its
activation (the ReLU output; the logits for the last layer), the share of dead ReLUs (units
that output 0 for every image of the batch), the weight-gradient norm and the std of the
gradient reaching the activation. Without BN, a net initialised with N(0, 0.01) shrinks the
signal by a roughly constant factor per layer (gain^2 = fan_in * 0.01^2 / 2), so the figure
that decides is the *signal ratio*: activation std of the last conv over that of the first.
Thresholds are calibrated from measurements of A..E x {BN, no BN} x every init at 32 and
224 px (benchmarks/bench_health.py calibrate; the table is in docs/diagnostics.md).

The training monitor (loss cliffs, collapse, plateaus at chance) is in health_monitor.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vggnet.errors import ConfigError
from vggnet.train.health_monitor import Monitor, print_event, weight_layers

# Calibrated (docs/diagnostics.md): a signal ratio below VANISH marks the deep nets that never
# learn (D/E std0.01 without BN: 1e-7 and below) and leaves A std0.01 (4e-4..6e-4, which seed
# note 002 trained) and D pre-initialised from A (3e-5) above it. Above EXPLODE, or an initial
# loss over LOSS_EXPLODE x log(C): the paper's std 0.1 without BN (1e3..1e7). A logit std below
# LOGIT_AT_RISK means the output barely depends on the input, and every layer's gradient is that
# small too (A std0.01: 5e-6..2e-5; glorot E, the smallest healthy case: 2e-4).
VANISH = 1e-5
EXPLODE = 1e3
LOSS_EXPLODE = 10.0
LOSS_AT_RISK = 3.0  # initial loss over 3 x log(C): confidently wrong from the start
LOGIT_AT_RISK = 1e-4
# The first conv's backward signal under 1/1000 of the last conv's: in the small init study
# (docs/RESULTS.md) the five D runs with Glorot init and no BN, gradient ratio 4e-4 to 7e-4,
# all stayed at chance for 750 SGD steps; every other run of the 141 had a ratio above 4e-3.
GRAD_AT_RISK = 1e-3
DEAD = 0.5  # a layer with more than half its ReLUs dead for the whole batch


@dataclass
class LayerStats:
    """One weight layer at initialisation."""

    name: str  # module path, e.g. "features.0"
    kind: str  # "conv3x3", "conv1x1", "fc" (head), "output" (the last layer)
    act_std: float  # std of the ReLU output (the logits for the last layer)
    dead: float  # share of ReLU units that are 0 for every image (nan for the last layer)
    grad_norm: float  # L2 norm of the weight gradient
    signal_grad: float  # std of dLoss/dActivation (backward signal)
    weight_std: float
    grad_to_weight: float  # ||grad|| / ||weight||: how far one unit-lr step moves the layer
    verdict: str = "healthy"  # "healthy" | "vanishing" | "exploding" | "dead"


@dataclass
class Diagnosis:
    """Per-layer statistics, the summary figures, and the overall verdict with fixes."""

    layers: list[LayerStats]
    signal_ratio: float  # act std, last conv / first conv
    grad_ratio: float  # backward signal std, first conv / last conv
    logit_std: float  # std of the logits over the batch and classes
    logit_spread: float  # mean over images of (max - min) logit; ~log(C) is needed to be confident
    loss: float
    chance_loss: float  # log(C): the loss of a uniform prediction
    verdict: str  # "healthy" | "at risk" | "will not train"
    reason: str
    fixes: list[str] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become None."""
        return _finite(asdict(self))

    def table(self) -> str:
        """The per-layer table and the verdict, in plain words."""
        lines = [f"{'layer':<16}{'kind':<9}{'act std':>11}{'dead ReLU':>11}{'grad norm':>11}  verdict"]
        for r in self.layers:
            dead = "-" if math.isnan(r.dead) else f"{100 * r.dead:.0f}%"
            lines.append(f"{r.name:<16}{r.kind:<9}{r.act_std:>11.3g}{dead:>11}{r.grad_norm:>11.3g}  {r.verdict}")
        lines += [
            "",
            f"signal ratio (act std, last conv / first conv): {self.signal_ratio:.3g}",
            f"gradient ratio (backward signal, first conv / last conv): {self.grad_ratio:.3g}",
            f"logit std {self.logit_std:.3g}, spread {self.logit_spread:.3g} (log C = {self.chance_loss:.3g}); "
            f"loss {self.loss:.4g}",
            f"verdict: {self.verdict.upper()}: {self.reason}",
        ]
        lines += [f"  fix: {fix}" for fix in self.fixes]
        return "\n".join(lines)


def _kind(module: nn.Module, *, head: bool, last: bool) -> str:
    if last:
        return "output"
    if head or isinstance(module, nn.Linear):
        return "fc"
    return f"conv{module.kernel_size[0]}x{module.kernel_size[1]}"


def diagnose(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Diagnosis:
    """One forward and backward pass in training mode on (x, y); the model is left unchanged
    (gradients cleared, mode restored)."""
    layers = weight_layers(model)
    if not layers:
        raise ConfigError("diagnose needs a model with Conv2d or Linear layers")
    acts: dict[str, dict[str, torch.Tensor]] = {name: {} for name, _, _ in layers}
    handles = []

    def watch(name: str):
        def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            rec = acts[name]
            rec["std"] = out.detach().float().std()
            if out.ndim > 1:
                dims = [0] + list(range(2, out.ndim))
                rec["dead"] = (out.detach().amax(dim=dims) <= 0).float().mean()
            if out.requires_grad:
                out.register_hook(lambda g: rec.__setitem__("grad", g.detach().float().std()))

        return hook

    classifier_modules = {id(m) for m in getattr(model, "classifier", nn.Sequential()).modules()}
    for name, module, relu in layers[:-1]:
        handles.append((relu or module).register_forward_hook(watch(name)))
    last_name, last, _ = layers[-1]
    handles.append(last.register_forward_hook(watch(last_name)))

    was_training = model.training
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    saved_grads = [p.grad for p in params]
    saved_buffers = [(b, b.clone()) for b in model.buffers()]  # BN running stats move in training mode
    for p in params:
        p.grad = None
    try:
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        rows = _rows(layers, acts, classifier_modules, last_name)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for p, g in zip(params, saved_grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in saved_buffers:
                b.copy_(saved)
    num_classes = logits.shape[1]
    with torch.no_grad():
        lf = logits.detach().float()
        spread = float((lf.amax(1) - lf.amin(1)).mean())
        logit_std = float(lf.std())
    return _judge(rows, logit_std=logit_std, spread=spread, loss=float(loss.detach()), num_classes=num_classes,
                  model=dict(getattr(model, "config", {})))


def _rows(layers: list, acts: dict, classifier_modules: set[int], last_name: str) -> list[LayerStats]:
    rows = []
    for name, module, relu in layers:
        rec = acts[name]
        grad = module.weight.grad
        rows.append(LayerStats(
            name=name, kind=_kind(module, head=id(module) in classifier_modules, last=name == last_name),
            act_std=float(rec.get("std", torch.tensor(float("nan")))),
            dead=float(rec["dead"]) if relu is not None and "dead" in rec else float("nan"),
            grad_norm=float(grad.norm()) if grad is not None else 0.0,
            signal_grad=float(rec.get("grad", torch.tensor(0.0))),
            weight_std=float(module.weight.detach().float().std()),
            grad_to_weight=_ratio(float(grad.norm()) if grad is not None else 0.0,
                                  float(module.weight.detach().float().norm()))))
    return rows


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return float("inf") if num > 0 else float("nan")


def _judge(rows: list[LayerStats], *, logit_std: float, spread: float, loss: float, num_classes: int,
           model: dict[str, Any]) -> Diagnosis:
    convs = [r for r in rows if r.kind.startswith("conv")] or rows[:-1] or rows
    first, last = convs[0], convs[-1]
    signal_ratio = _ratio(last.act_std, first.act_std)
    grad_ratio = _ratio(first.signal_grad, last.signal_grad)
    for r in rows:
        rel = _ratio(r.act_std, first.act_std)
        if r is not rows[-1] and not math.isnan(r.dead) and r.dead > DEAD:
            r.verdict = "dead"
        elif not math.isfinite(r.act_std) or rel > EXPLODE:
            r.verdict = "exploding"
        elif rel < VANISH or r.act_std == 0:
            r.verdict = "vanishing"
    chance = math.log(num_classes)
    bn = model.get("batch_norm")
    init_fix = ("add BatchNorm (model.batch_norm=true): it fixed this in seed note 001"
                if not bn else "check the BatchNorm layers are in training mode")
    fixes: list[str] = []
    dead_layers = [r.name for r in rows[:-1] if r.verdict == "dead"]
    kaiming = "use model.init=kaiming (glorot, the authors' fix after submission, starts slowly in D/E without BN)"
    if (not math.isfinite(loss) or not math.isfinite(signal_ratio) or signal_ratio > EXPLODE
            or loss > LOSS_EXPLODE * chance):
        verdict = "will not train"
        reason = (f"the signal explodes: activations grow {signal_ratio:.3g}x from the first to the last conv, "
                  f"the logits have std {logit_std:.3g} and the initial loss is {loss:.3g} against "
                  f"log(C) = {chance:.3g}; SGD will diverge")
        fixes = ["use model.init=std0.01 (the reading of the paper's init that trains, docs/paper.md) or "
                 "model.init=kaiming: std 0.1 (the paper's '10^-2 variance' read literally) is too large for layers "
                 "with hundreds of inputs", init_fix, "or lower train.lr and set train.grad_clip=1"]
    elif signal_ratio < VANISH or last.act_std == 0:
        verdict = "will not train"
        reason = (f"the signal vanishes: the last conv's activations are {signal_ratio:.3g} of the first conv's "
                  f"(backward signal ratio {grad_ratio:.3g}) and the logits are constant ({logit_std:.2g} std), "
                  "so the loss can reach log(C) by learning the class frequencies while accuracy stays at chance")
        fixes = [kaiming, init_fix, "or pre-initialise from a trained A (model.pre_initialise=A.safetensors, "
                 "paper 3.1); measure it with `vggnet diagnose`"]
    elif dead_layers:
        verdict = "at risk"
        reason = f"more than half the ReLUs never fire in {', '.join(dead_layers)}: those units get no gradient"
        fixes = [kaiming, init_fix, "check the input normalisation (data.normalize=standardize)"]
    elif spread <= 1e-6 * chance:
        verdict = "at risk"
        reason = (f"the logits are the same for every image (spread {spread:.2g}): the last layer is (near) "
                  "zero, so the layers below it get no gradient until it grows")
        fixes = ["re-initialise the last layer (model.init=kaiming)", "check that no layer is frozen at zero"]
    elif loss > LOSS_AT_RISK * chance:
        verdict = "at risk"
        reason = (f"the initial loss is {loss:.3g}, over {LOSS_AT_RISK:g}x log(C) = {chance:.3g}: the net starts "
                  f"confidently wrong (logit std {logit_std:.3g}) and the first steps may diverge")
        fixes = [kaiming, init_fix, "or lower train.lr, warm up (train.warmup_epochs=1), train.grad_clip=1"]
    elif grad_ratio < GRAD_AT_RISK:
        verdict = "at risk"
        reason = (f"the gradient reaching the first conv is {grad_ratio:.3g} of the last conv's (signal ratio "
                  f"{signal_ratio:.3g}): the early layers start learning about {1 / grad_ratio:.0f}x slower than "
                  "the late ones; a slow start, not a dead end, but D started this way (Glorot, no BN) stayed at "
                  "chance for 750 SGD steps in 5 of 5 runs of the small init study")
        fixes = ["use model.init=kaiming", init_fix, "or pre-initialise from a trained A "
                 "(model.pre_initialise=A.safetensors, paper 3.1)", "or train longer, watching the first epochs"]
    elif logit_std < LOGIT_AT_RISK:
        verdict = "at risk"
        reason = (f"the signal shrinks to {signal_ratio:.3g} of the first conv's by the last conv and the logits "
                  f"barely depend on the image (std {logit_std:.2g}); every gradient is that small, so learning "
                  "starts slowly or not at all (seed note 002 trained A this way; deeper nets failed)")
        fixes = [kaiming, init_fix, "watch the first epochs: `vggnet train` reports a plateau at chance"]
    else:
        verdict = "healthy"
        reason = (f"the signal keeps its scale through the net (ratio {signal_ratio:.3g}), the gradient "
                  f"reaches the first layer (ratio {grad_ratio:.3g}) and the logits respond to the image "
                  f"(std {logit_std:.2g})")
    return Diagnosis(layers=rows, signal_ratio=signal_ratio, grad_ratio=grad_ratio, logit_std=logit_std,
                     logit_spread=spread, loss=loss, chance_loss=chance, verdict=verdict, reason=reason,
                     fixes=fixes, model=model)


def build_for_diagnosis(cfg: Any, *, num_classes: int, in_channels: int) -> nn.Module:
    """The model exactly as the trainer builds it from a RunConfig (init, seed, pre-initialisation)."""
    from vggnet.model.init import pre_initialise
    from vggnet.model.vgg import build_model

    m = cfg.model
    model = build_model(m.name, num_classes=num_classes, batch_norm=m.batch_norm, head=m.head,
                        in_channels=in_channels, width=m.width, dropout=m.dropout, init=m.init, seed=cfg.seed)
    if m.pre_initialise:
        from vggnet.weights.native import load_weights

        pre_initialise(model, load_weights(m.pre_initialise))
    return model


PREFLIGHT_IMAGES = 16  # enough for the statistics, seconds even for VGG-E at 224 on a CPU


def preflight(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Diagnosis:
    """The init-signal diagnosis `vggnet train` runs before step 1, on the first training batch;
    the global RNG (dropout) is left as it was, so the run is the same with or without it."""
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return diagnose(model, x[:PREFLIGHT_IMAGES], y[:PREFLIGHT_IMAGES])


def refusal(d: Diagnosis) -> str:
    """The one line `vggnet train` stops with when the diagnosis says "will not train"."""
    fix = d.fixes[0] if d.fixes else "see `vggnet diagnose`"
    return (f"this config will not train ({d.reason.split(':')[0]}: logit std {d.logit_std:.3g}, initial loss "
            f"{d.loss:.3g} vs log(C) = {d.chance_loss:.3g}); fix: {fix}; `vggnet diagnose` shows every layer, "
            "--set train.force=true trains anyway")


def diagnose_config(cfg: Any, *, batch_size: int | None = None) -> Diagnosis:
    """Build the model as `vggnet train` would and diagnose it on one real training batch."""
    from vggnet.data import augment, loaders, sources

    ds = sources.get(cfg.data, seed=cfg.seed)
    channels = ds.channels
    stats = augment.compute_stats(ds.train)
    batch = min(batch_size or cfg.train.batch_size, len(ds.train))
    loader = loaders.make_loader(ds, "train", cfg.data, train=True, batch_size=batch, stats=stats,
                                 channels=channels, device=torch.device("cpu"), seed=cfg.seed, rank=0, world_size=1)
    x, y = next(iter(loader.epoch(0)))
    model = build_for_diagnosis(cfg, num_classes=len(ds.classes), in_channels=channels)
    return diagnose(model, x, y)


__all__ = ["Diagnosis", "LayerStats", "Monitor", "build_for_diagnosis", "diagnose", "diagnose_config",
           "print_event"]
