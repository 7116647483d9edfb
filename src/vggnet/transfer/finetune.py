"""Fine-tuning a pretrained VGG on a new dataset (seed 003; paper 3.1's S=384-from-256 step).

The model surgery is here: a new last layer for the dataset's classes (the rest kept),
learning-rate groups named after the paper's blocks, and freezing. A scale of 0 freezes a
group: its parameters get no gradient, are left out of the optimizer, and its BatchNorm
layers keep their running statistics (they stay in eval mode while the net trains).

Modes:
- ``frozen``: the conv features frozen, the classifier trained (seed 003's first experiment).
- ``full``: everything trained, the features at ``features_lr_scale`` x lr (its second).
- ``groups``: a scale per group: block1..block5, fc (FC1, FC2), head (the new last layer).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from torch import nn

from vggnet.errors import ConfigError
from vggnet.model.vgg import VGG
from vggnet.files import atomic_write
from vggnet.config import RunConfig, validate
from vggnet.weights import preprocess

MODES = ("frozen", "full", "groups")
GROUPS = ("block1", "block2", "block3", "block4", "block5", "fc", "head")


def replace_head(model: VGG, num_classes: int, *, seed: int | None = None) -> VGG:
    """A new, freshly initialised last layer for ``num_classes`` (in place); the rest is kept."""
    model.reset_classifier(num_classes, seed=seed)
    return model


def layer_groups(model: VGG) -> dict[str, list[nn.Module]]:
    """The modules of each group: the five conv blocks (a block ends at its max-pool), the
    hidden FC layers and the last layer."""
    groups: dict[str, list[nn.Module]] = {name: [] for name in GROUPS}
    block = 1
    for module in model.features:
        groups[f"block{min(block, 5)}"].append(module)
        if isinstance(module, nn.MaxPool2d):
            block += 1
    layers = list(model.classifier)
    groups["fc"], groups["head"] = layers[:-1], layers[-1:]
    return groups


def group_scales(mode: str, *, features_lr_scale: float = 0.1,
                 scales: dict[str, float] | None = None) -> dict[str, float]:
    """Learning-rate scale per group for ``mode``; ``scales`` overrides single groups (any mode)."""
    if mode not in MODES:
        raise ConfigError(f"unknown fine-tuning mode '{mode}'; valid: {', '.join(MODES)}")
    features = {"frozen": 0.0, "full": features_lr_scale, "groups": 1.0}[mode]
    out = {name: (features if name.startswith("block") else 1.0) for name in GROUPS}
    for name, value in (scales or {}).items():
        if name not in out:
            raise ConfigError(f"unknown layer group '{name}'; valid: {', '.join(GROUPS)}")
        out[name] = float(value)
    bad = {k: v for k, v in out.items() if v < 0}
    if bad:
        raise ConfigError(f"learning-rate scales must be >= 0 (0 freezes), got {bad}")
    if not any(out.values()):
        raise ConfigError("every group is frozen; give at least one group a scale > 0")
    return out


def _keep_eval(module: nn.Module, _args: Any) -> None:
    module.train(False)


def freeze(modules: list[nn.Module]) -> None:
    """No gradient for these modules' parameters, and their BatchNorm statistics fixed."""
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(False)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and not getattr(sub, "_vggnet_frozen", False):
                sub.register_forward_pre_hook(_keep_eval)
                sub._vggnet_frozen = True
                sub.train(False)


def apply_scales(model: VGG, scales: dict[str, float]) -> list[dict]:
    """Freeze the groups with scale 0 and return the trainer's ``param_groups``
    ([{"params", "lr_scale", "name"}], trainable groups only)."""
    param_groups = []
    for name, modules in layer_groups(model).items():
        params = [p for m in modules for p in m.parameters()]
        if not params:
            continue
        if scales[name] == 0:
            freeze(modules)
        else:
            param_groups.append({"params": params, "lr_scale": scales[name], "name": name})
    return param_groups


def prepare(model: VGG, num_classes: int, mode: str, *, features_lr_scale: float = 0.1,
            scales: dict[str, float] | None = None, seed: int | None = None) -> list[dict]:
    """All the surgery for fine-tuning, in place: new head, Keras-style preprocessing folded
    into the weights (so the trainer's loaders feed it right), freezing; returns param_groups."""
    group = group_scales(mode, features_lr_scale=features_lr_scale, scales=scales)
    preprocess.canonical(model)
    if model.config["num_classes"] != num_classes or group["head"] > 0:
        replace_head(model, num_classes, seed=seed)
    return apply_scales(model, group)


def finetune(weights: str | Path, cfg: RunConfig, out_dir: str | Path | None = None, *, mode: str = "frozen",
             features_lr_scale: float = 0.1, scales: dict[str, float] | None = None) -> Any:
    """Fine-tune the weights at ``weights`` (any ``--weights`` spec) on ``cfg.data``; returns
    the trainer's RunResult. The run's config records the pretrained model and mode."""
    from vggnet.data import sources
    from vggnet.train import trainer
    from vggnet.weights.formats import load_pretrained

    model = load_pretrained(weights)
    ds = sources.get(cfg.data, seed=cfg.seed)
    cfg = copy.deepcopy(cfg)
    for key in ("batch_norm", "head", "width", "dropout"):
        setattr(cfg.model, key, model.config[key])
    cfg.model.name = model.config["name"]
    cfg.init_from = None  # the model passed in is the start
    groups = prepare(model, len(ds.classes), mode, features_lr_scale=features_lr_scale, scales=scales,
                     seed=cfg.seed)
    pre = (getattr(model, "metadata", None) or {}).get("preprocessing") or {}
    if pre.get("normalize"):
        cfg.data.normalize = pre["normalize"]
    cfg.name = cfg.name or f"finetune-{cfg.model.name}-{cfg.data.name}-{mode}"
    validate(cfg)
    result = trainer.fit(cfg, out_dir, model=model, param_groups=groups)
    record = {"weights": str(weights), "source": model.metadata.get("source"), "mode": mode,
              "lr_scales": {g["name"]: g["lr_scale"] for g in groups},
              "frozen": [name for name in GROUPS if name not in {g["name"] for g in groups}]}
    atomic_write(Path(result.out_dir) / "finetune.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    return result
