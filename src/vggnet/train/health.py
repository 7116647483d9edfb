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

# Calibrated (docs/diagnostics.md): signal ratio below VANISH -> the deep nets that never learn
# (D/E std0.01 without BN: 1e-9..1e-6); below AT_RISK -> trains slowly or not at all
# (A std0.01: ~1e-4); healthy nets (BN, kaiming, glorot, pre-initialised) stay above.
VANISH = 1e-5
AT_RISK = 3e-3
EXPLODE = 1e3  # activations grow this much from the first to the last conv (paper init, std 0.1)
LAYER_VANISH = 1e-3  # per-layer verdict: activation std relative to the first conv's
LAYER_EXPLODE = 1e2
DEAD = 0.5  # a layer with more than half its ReLUs dead for the whole batch


@dataclass
class LayerStats:
    """One weight layer at initialisation."""

    name: str  # module path, e.g. "features.0"
    kind: str  # "conv3x3", "conv1x1", "fc", "linear"
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
        return asdict(self)

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


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module | None]]:
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


def _kind(module: nn.Module, in_features: bool) -> str:
    if isinstance(module, nn.Linear):
        return "linear" if not in_features else "fc"
    k = module.kernel_size[0]
    return "fc" if in_features else f"conv{k}x{k}"


def diagnose(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Diagnosis:
    """One forward and backward pass in training mode on (x, y); the model is left unchanged
    (gradients cleared, mode restored)."""
    layers = _weight_layers(model)
    if not layers:
        from vggnet.errors import ConfigError

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
    for p in params:
        p.grad = None
    try:
        logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    rows = []
    for name, module, relu in layers:
        rec = acts[name]
        grad = module.weight.grad
        is_head = id(module) in classifier_modules and isinstance(module, nn.Linear)
        rows.append(LayerStats(
            name=name, kind=_kind(module, is_head and name != last_name),
            act_std=float(rec.get("std", torch.tensor(float("nan")))),
            dead=float(rec["dead"]) if relu is not None and "dead" in rec else float("nan"),
            grad_norm=float(grad.norm()) if grad is not None else 0.0,
            signal_grad=float(rec.get("grad", torch.tensor(0.0))),
            weight_std=float(module.weight.detach().float().std()),
            grad_to_weight=_ratio(float(grad.norm()) if grad is not None else 0.0,
                                  float(module.weight.detach().float().norm()))))
    for p, g in zip(params, saved_grads):
        p.grad = g
    num_classes = logits.shape[1]
    with torch.no_grad():
        lf = logits.detach().float()
        spread = float((lf.amax(1) - lf.amin(1)).mean())
        logit_std = float(lf.std())
    return _judge(rows, logit_std=logit_std, spread=spread, loss=float(loss.detach()), num_classes=num_classes,
                  model=dict(getattr(model, "config", {})))


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
        elif not math.isfinite(r.act_std) or rel > LAYER_EXPLODE:
            r.verdict = "exploding"
        elif rel < LAYER_VANISH or r.act_std == 0:
            r.verdict = "vanishing"
    chance = math.log(num_classes)
    bn = model.get("batch_norm")
    init_fix = ("add BatchNorm (model.batch_norm=true): it fixed this in seed note 001"
                if not bn else "check the BatchNorm layers are in training mode")
    fixes: list[str] = []
    dead_layers = [r.name for r in rows[:-1] if r.verdict == "dead"]
    if not math.isfinite(loss) or not math.isfinite(signal_ratio) or signal_ratio > EXPLODE or loss > 10 * chance:
        verdict = "will not train"
        reason = (f"the signal explodes: activations grow {signal_ratio:.3g}x from the first to the last conv "
                  f"and the initial loss is {loss:.3g} against log(C) = {chance:.3g}; SGD will diverge")
        fixes = ["use model.init=kaiming (or glorot): the paper's N(0, variance 1e-2) is std 0.1, too large "
                 "for 3x3 convs with hundreds of input channels", init_fix, "or lower train.lr and set train.grad_clip=1"]
    elif signal_ratio < VANISH or last.act_std == 0:
        verdict = "will not train"
        reason = (f"the signal vanishes: the last conv's activations are {signal_ratio:.3g} of the first conv's "
                  f"(backward signal ratio {grad_ratio:.3g}); the logits are constant ({logit_std:.2g} std), "
                  "so the loss can fall to log(C) by learning class frequencies while accuracy stays at chance")
        fixes = ["use model.init=kaiming or glorot (the authors' fix after submission)", init_fix,
                 "or pre-initialise from a trained A (model.pre_initialise=path/to/A.safetensors, paper 3.1)"]
    elif dead_layers:
        verdict = "at risk"
        reason = f"more than half the ReLUs never fire in {', '.join(dead_layers)}: those units get no gradient"
        fixes = ["use model.init=kaiming", init_fix, "check the input normalisation (data.normalize=standardize)"]
    elif spread < 1e-6 * chance:
        verdict = "at risk"
        reason = (f"the logits are the same for every image (spread {spread:.2g}); the layers below the last "
                  "get no gradient until it grows")
        fixes = ["re-initialise the last layer (model.init=kaiming)", "check that no layer is frozen at zero"]
    elif signal_ratio < AT_RISK:
        verdict = "at risk"
        reason = (f"the signal shrinks to {signal_ratio:.3g} of the first conv's by the last conv; this net "
                  "can learn (seed note 002 trained A this way) but slowly, and deeper nets like this do not")
        fixes = ["use model.init=kaiming or glorot", init_fix, "watch the first epochs: `vggnet train` reports "
                 "a plateau at chance"]
    else:
        verdict = "healthy"
        reason = (f"the signal keeps its scale through the net (ratio {signal_ratio:.3g}) and the gradient "
                  f"reaches the first layer (ratio {grad_ratio:.3g})")
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
        from vggnet.model.weights import load_weights

        pre_initialise(model, load_weights(m.pre_initialise))
    return model


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


from vggnet.train.health_monitor import Monitor, print_event  # noqa: E402  (re-exported)

__all__ = ["Diagnosis", "LayerStats", "Monitor", "build_for_diagnosis", "diagnose", "diagnose_config",
           "print_event"]
