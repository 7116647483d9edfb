"""Weight initialisation: the paper's, the common reimplementations', and pre-initialisation.

The paper (3.1): "we sampled the weights from a normal distribution with the zero mean and
10^-2 variance. The biases were initialised with zero." Two readings, both named for what they are:

- ``std0.1``: the sentence read literally, variance 1e-2 = std 0.1. At full width in the paper's
  input regime (0-255 minus the mean pixel) the signal explodes: `vggnet diagnose` says "will
  not train" for A (docs/training.md has the numbers).
- ``std0.01``: N(0, 0.01^2), Caffe's ``gaussian_filler { std: 0.01 }`` as in Caffe's ImageNet
  recipes, and what most reimplementations (and seed note 002) use: it trains A; the paper
  presets use it.
- ``glorot``: Xavier/Glorot uniform, which the authors found trains deep nets without
  pre-training.
- ``kaiming``: torchvision's: conv kaiming-normal (fan_out, ReLU), linear N(0, 0.01).
BatchNorm: weight 1, bias 0, always.
"""

from __future__ import annotations

import torch
from torch import nn

from vggnet.config import INITS
from vggnet.config import RETIRED_INITS as RETIRED
from vggnet.errors import ConfigError, WeightsError

@torch.no_grad()
def initialise(model: nn.Module, scheme: str, *, seed: int | None = None) -> nn.Module:
    if scheme in RETIRED:
        raise ConfigError(RETIRED[scheme])
    if scheme not in INITS:
        raise ConfigError(f"unknown init '{scheme}'; valid: {', '.join(INITS)}")
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            _init_weight(module, scheme, generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _init_weight(module: nn.Conv2d | nn.Linear, scheme: str, generator: torch.Generator | None) -> None:
    weight = module.weight
    if scheme == "std0.1":
        nn.init.normal_(weight, 0.0, 0.1, generator=generator)
    elif scheme == "std0.01":
        nn.init.normal_(weight, 0.0, 0.01, generator=generator)
    elif scheme == "glorot":
        nn.init.xavier_uniform_(weight, generator=generator)
    elif isinstance(module, nn.Conv2d):  # kaiming, as torchvision
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=generator)
    else:
        nn.init.normal_(weight, 0.0, 0.01, generator=generator)


@torch.no_grad()
def pre_initialise(deep_model: nn.Module, trained_a: nn.Module) -> nn.Module:
    """Copy a trained net A's first four conv layers and its three FC layers into a deeper
    net (paper 3.1): A's conv1_1, conv2_1, conv3_1, conv3_2 go to the deeper net's layers of
    the same names. The other layers keep their random init; copied layers train at the full
    learning rate like the rest."""
    pairs = list(zip(_first_convs(trained_a), _first_convs(deep_model)))
    pairs += [(trained_a.classifier[i], deep_model.classifier[i]) for i in range(len(trained_a.classifier))
              if hasattr(trained_a.classifier[i], "weight")]
    names = (getattr(trained_a, "config", {}).get("name", "?"), getattr(deep_model, "config", {}).get("name", "?"))
    for index, (src, dst) in enumerate(pairs):
        src_shapes = [tuple(t.shape) for t in src.state_dict().values()]
        dst_shapes = [tuple(t.shape) for t in dst.state_dict().values()]
        if src_shapes != dst_shapes or type(src) is not type(dst):
            raise WeightsError(
                f"cannot pre-initialise {names[1]} from {names[0]}: layer {index} has shapes "
                f"{src_shapes} in the source and {dst_shapes} in the target; "
                "build both with the same width, head, in_channels and num_classes")
    for src, dst in pairs:
        dst.load_state_dict(src.state_dict())
    return deep_model


def _first_convs(model: nn.Module, count: int = 4) -> list[nn.Module]:
    """Net A's first ``count`` convs by their Caffe names (conv1_1, conv2_1, conv3_1, conv3_2)
    and the same-named convs of ``model``, each with the BatchNorm that follows it (BN variants).
    Copying by name is what makes the shapes agree: A's conv2_1 maps 64 -> 128 channels, as D's does."""
    convs = _named_convs(model)
    missing = [name for name in A_PRE_INITIALISED[:count] if name not in convs]
    if missing:
        letter = getattr(model, "config", {}).get("name", "?")
        raise WeightsError(f"cannot pre-initialise: {letter} has no {', '.join(missing)} "
                           f"(A's first four convs are {', '.join(A_PRE_INITIALISED)}); train it from random init")
    return [convs[name] for name in A_PRE_INITIALISED[:count]]


A_PRE_INITIALISED = ("conv1_1", "conv2_1", "conv3_1", "conv3_2")


def _named_convs(model: nn.Module) -> dict[str, nn.Module]:
    layers = list(model.features)
    out: dict[str, nn.Module] = {}
    block, index = 1, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            block, index = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            index += 1
            following = layers[i + 1] if i + 1 < len(layers) else None
            bn = isinstance(following, nn.BatchNorm2d)
            out[f"conv{block}_{index}"] = nn.Sequential(layer, following) if bn else layer
    return out
