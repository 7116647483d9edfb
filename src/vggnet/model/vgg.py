"""The one VGG module: features from Table 1, and a head chosen by option.

Heads:
- ``fc``: the paper's FC-4096, FC-4096, FC-N with dropout after the first two. As in
  torchvision, the feature map is adaptively pooled to 7x7 first, so a 224 crop is
  exactly the paper's net and torchvision weights load unchanged.
- ``conv``: the same weights as a 7x7 conv and two 1x1 convs (paper 3.2, dense
  evaluation): an input of at least 224 gives a class score map, spatially averaged.
- ``gap``: global average pooling and one linear layer, the usual head for 28-32 px.

Box heads (Appendix A, localisation): ``box_head="scr"`` makes the last layer predict one
box (centre x, centre y, width, height, each a fraction of the input's size) shared by all
classes; ``"pcr"`` one box per class (4 x num_classes outputs). The rest of the net is
unchanged, so a classification net's weights initialise it (all but the last layer).

State-dict keys follow torchvision (``features.N.*``, ``classifier.{0,3,6}.*``); every layer
also has the Caffe release's name (conv1_1 ... fc8, see ``architectures.layer_names``), which
``features_at`` takes. ``features_only=True`` (timm's interface) drops the classifier and
returns the ``feature_info`` stages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from vggnet.errors import ConfigError
from vggnet.model import init as init_lib
from vggnet.model.architectures import CONFIGS, HEAD_INPUT, LRN, MIN_INPUT, layer_names, resolve_name

HEADS = ("fc", "conv", "gap")
STAGES = 6  # feature_info: before each of the five pools (reduction 1 ... 16), and pool5 (32)
BOX_HEADS = ("scr", "pcr")  # single-class and per-class regression (Appendix A)


class AlexNetLRN(nn.Module):
    """b = a / (k + alpha * sum_{window} a^2) ** beta, AlexNet's formula.

    torch's LocalResponseNorm divides alpha by the window size, so it gets alpha * size.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha * size, beta=beta, k=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrn(x)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def make_features(letter: str, *, batch_norm: bool, in_channels: int, width: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in CONFIGS[letter]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif item == "L":
            layers.append(AlexNetLRN(**LRN))
        else:
            out, kernel = (item, 3) if isinstance(item, int) else item
            out = _scaled(out, width)
            layers.append(nn.Conv2d(channels, out, kernel_size=kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
    return nn.Sequential(*layers)


def make_classifier(head: str, in_features: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    if head == "gap":
        return nn.Sequential(nn.Linear(in_features, num_classes))
    if head == "fc":
        first, second, third = (nn.Linear(in_features * 49, hidden), nn.Linear(hidden, hidden),
                                nn.Linear(hidden, num_classes))
    else:
        first, second, third = (nn.Conv2d(in_features, hidden, 7), nn.Conv2d(hidden, hidden, 1),
                                nn.Conv2d(hidden, num_classes, 1))
    return nn.Sequential(first, nn.ReLU(inplace=True), nn.Dropout(dropout),
                         second, nn.ReLU(inplace=True), nn.Dropout(dropout), third)


class VGG(nn.Module):
    """A VGG network. Build it with :func:`build_model`; ``config`` rebuilds it."""

    def __init__(self, name: str = "D", *, num_classes: int = 1000, batch_norm: bool = False,
                 head: str = "fc", in_channels: int = 3, width: float = 1.0, dropout: float = 0.5,
                 features_only: bool = False, out_indices: Sequence[int] = tuple(range(STAGES)),
                 box_head: str | None = None):
        super().__init__()
        letter, bn_from_name = resolve_name(name)
        batch_norm = batch_norm or bn_from_name
        if head not in HEADS:
            raise ConfigError(f"unknown head '{head}'; valid: {', '.join(HEADS)}")
        if box_head is not None and box_head not in BOX_HEADS:
            raise ConfigError(f"unknown box head '{box_head}'; valid: {', '.join(BOX_HEADS)}")
        for arg, value, low in (("num_classes", num_classes, 1), ("in_channels", in_channels, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{arg} must be an integer >= {low}, got {value!r}")
        if not width > 0:
            raise ConfigError(f"width must be > 0, got {width!r}")
        if not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config: dict[str, Any] = {
            "name": letter, "num_classes": num_classes, "batch_norm": batch_norm, "head": head,
            "in_channels": in_channels, "width": width, "dropout": dropout, "box_head": box_head,
        }
        if features_only:
            indices = list(out_indices)
            if not indices or any(not isinstance(i, int) or not 0 <= i < STAGES for i in indices):
                raise ConfigError(f"out_indices must be stage numbers 0 to {STAGES - 1}, got {list(out_indices)}")
            self.config.update(features_only=True, out_indices=indices)
        self.features = make_features(letter, batch_norm=batch_norm, in_channels=in_channels, width=width)
        self.num_features = _scaled(512, width)
        self.hidden = _scaled(4096, width)
        self.classifier = nn.Sequential() if features_only else make_classifier(
            head, self.num_features, self.hidden, self.num_outputs, dropout)
        # Per-block activation checkpointing in training (train.checkpoint_activations): a choice of
        # how to train, not part of the architecture, so it is not in ``config``.
        self.checkpoint_activations = False

    @property
    def head(self) -> str:
        return self.config["head"]

    @property
    def num_outputs(self) -> int:
        """Width of the last layer: class scores, or 4 (SCR) / 4 x classes (PCR) box numbers."""
        box_head, classes = self.config.get("box_head"), self.config["num_classes"]
        return classes if box_head is None else 4 * (1 if box_head == "scr" else classes)

    def boxes(self, output: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """A box head's output [N, 4k(, h, w)] as boxes [N, k(, h, w), 4] (k = 1 for SCR, C for
        PCR); with ``classes`` [N] (PCR), each image's box for that class: [N(, h, w), 4]."""
        if self.config.get("box_head") is None:
            raise ConfigError("boxes() needs a box head; build the model with box_head='scr' or 'pcr'")
        out = output.unflatten(1, (-1, 4))
        if output.ndim == 4:
            out = out.permute(0, 1, 3, 4, 2)
        if classes is None:
            return out
        if self.config["box_head"] == "scr":
            return out[:, 0]
        return out[torch.arange(len(classes), device=out.device), classes.to(out.device)]

    @property
    def min_input_size(self) -> int:
        return HEAD_INPUT if self.head == "conv" else MIN_INPUT

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ConfigError(f"expected a batch of images [N, C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.config["in_channels"]:
            raise ConfigError(f"model expects {self.config['in_channels']} input channels, got {x.shape[1]}; "
                              f"convert the images or build the model with in_channels={x.shape[1]}")
        if min(x.shape[-2:]) < self.min_input_size:
            raise ConfigError(f"input {tuple(x.shape[-2:])} is too small for the '{self.head}' head: "
                              f"minimum size is {self.min_input_size}x{self.min_input_size}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv stack: [N, C, H, W] -> [N, 512*width, H/32, W/32]."""
        self._check_input(x)
        if self.checkpoint_activations and self.training and torch.is_grad_enabled():
            from vggnet.model.memory import checkpointed

            return checkpointed(self.features, x)
        return self.features(x)

    def score_map(self, features: torch.Tensor) -> torch.Tensor:
        """Conv head only: the class score map before spatial averaging (paper 3.2)."""
        if self.head != "conv":
            raise ConfigError("score_map needs the conv head; use vggnet.convert_head(model, 'conv')")
        return self.classifier(features)

    def _head_input(self, x: torch.Tensor) -> torch.Tensor:
        """The conv map as the head takes it: pooled to 7x7 and flattened (fc), as is (conv),
        globally averaged (gap)."""
        if self.head == "gap":
            return torch.flatten(x.mean((2, 3)), 1)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 7), 1) if self.head == "fc" else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features -> logits. ``pre_logits`` stops before the last layer (penultimate features)."""
        if self.config.get("features_only"):
            raise ConfigError("a features_only model has no head; build it without features_only")
        layers = self.classifier[:-1] if pre_logits else self.classifier
        x = layers(self._head_input(x))
        return x.mean((2, 3)) if self.head == "conv" else x

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits, or for ``features_only`` the maps of the ``out_indices`` stages."""
        if self.config.get("features_only"):
            stages = [self.feature_info[i]["name"] for i in self.config["out_indices"]]
            return list(self.features_at(x, stages).values())
        return self.forward_head(self.forward_features(x))

    def named_layers(self) -> dict[str, nn.Module]:
        """Every layer by its Caffe name (conv1_1, relu1_1, pool1, ..., fc6, relu6, drop6, fc7, fc8)."""
        features, classifier = layer_names(self.config["name"], batch_norm=self.config["batch_norm"], head=self.head)
        return {**dict(zip(features, self.features)), **dict(zip(classifier, self.classifier))}

    def features_at(self, x: torch.Tensor, names: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """The outputs of the named layers (e.g. ``["relu3_3", "pool5", "fc7"]``) in one forward
        pass that stops at the last of them: conv maps [N, C, H, W]; fc6/fc7/fc8 [N, D] for the
        fc and gap heads, score maps [N, D, h, w] for the conv head (before averaging)."""
        names = [names] if isinstance(names, str) else list(names)
        layers = self.named_layers()
        unknown = [n for n in names if n not in layers]
        if unknown or not names:
            raise ConfigError(f"no layer named {unknown[0] if unknown else 'at all'!r} in VGG-{self.config['name']}; "
                              f"valid: {', '.join(layers)}")
        self._check_input(x)
        out: dict[str, torch.Tensor] = {}
        for index, (name, module) in enumerate(layers.items()):
            if index == len(self.features):
                x = self._head_input(x)
            x = torch.relu(x) if isinstance(module, nn.ReLU) else module(x)  # not in place: x may be kept
            if name in names:
                out[name] = x
                if len(out) == len(set(names)):
                    break
        return {n: out[n] for n in names}

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's stages: the last layer before each pool (reduction 1, 2, 4, 8, 16) and pool5 (32),
        each with ``name``, ``num_chs``, ``reduction`` and ``module`` (its state-dict path)."""
        names = layer_names(self.config["name"], batch_norm=self.config["batch_norm"])[0]
        info: list[dict[str, Any]] = []
        channels = self.config["in_channels"]
        for index, module in enumerate(self.features):
            channels = module.out_channels if isinstance(module, nn.Conv2d) else channels
            if isinstance(module, nn.MaxPool2d):
                info.append({"name": names[index - 1], "num_chs": channels, "reduction": 2 ** len(info),
                             "module": f"features.{index - 1}"})
        last = len(self.features) - 1
        return info + [{"name": names[last], "num_chs": channels, "reduction": 32, "module": f"features.{last}"}]

    def reset_classifier(self, num_classes: int, *, seed: int | None = None) -> None:
        """A new, freshly initialised last layer (fc8) for ``num_classes``, in place; the other
        weights are kept (timm's interface; fine-tuning uses it)."""
        if self.config.get("features_only"):
            raise ConfigError("a features_only model has no classifier to reset; build it without features_only")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
        old = self.classifier[-1]
        new = nn.Conv2d(old.in_channels, num_classes, 1) if isinstance(old, nn.Conv2d) else nn.Linear(
            old.in_features, num_classes)
        init_lib.initialise(new, "kaiming", seed=seed)
        self.classifier[-1] = new.to(old.weight.device, old.weight.dtype)
        self.config["num_classes"] = num_classes
        meta = getattr(self, "metadata", None)
        if meta and "classes" in meta and len(meta["classes"]) != num_classes:
            self.metadata = {k: v for k, v in meta.items() if k != "classes"}


def build_model(name: str = "D", *, num_classes: int = 1000, batch_norm: bool = False, head: str = "fc",
                in_channels: int = 3, width: float = 1.0, dropout: float = 0.5,
                init: str | None = "kaiming", seed: int | None = None, features_only: bool = False,
                out_indices: Sequence[int] = tuple(range(STAGES)), box_head: str | None = None) -> VGG:
    """Build a VGG by the paper's letter ("A", "A-LRN", "B", "C", "D", "E"; "B-5x5" of section
    4.1) or a torchvision alias ("vgg16", "vgg16_bn", ...), initialised with ``init`` (see
    vggnet.model.init). ``features_only`` returns the maps of the ``out_indices`` stages of
    ``feature_info``; ``box_head`` makes it a localisation net (Appendix A)."""
    model = VGG(name, num_classes=num_classes, batch_norm=batch_norm, head=head, in_channels=in_channels,
                width=width, dropout=dropout, features_only=features_only, out_indices=out_indices,
                box_head=box_head)
    if init is not None:
        init_lib.initialise(model, init, seed=seed)
    return model


def from_config(config: dict[str, Any]) -> VGG:
    """Rebuild a model (uninitialised) from ``model.config``."""
    keys = ("name", "num_classes", "batch_norm", "head", "in_channels", "width", "dropout")
    missing = [k for k in keys if k not in config]
    if missing:
        raise ConfigError(f"model config is missing {', '.join(missing)}")
    extra = {k: config[k] for k in ("features_only", "out_indices") if k in config}
    return VGG(config["name"], box_head=config.get("box_head"), **{k: config[k] for k in keys[1:]}, **extra)


@torch.no_grad()
def convert_head(model: VGG, head: str) -> VGG:
    """Convert between the ``fc`` and ``conv`` heads in place, keeping the weights (paper 3.2:
    FC1 becomes a 7x7 conv, FC2 and FC3 1x1 convs)."""
    if head not in ("fc", "conv"):
        raise ConfigError(f"convert_head converts between 'fc' and 'conv', not '{head}'")
    if model.head == head:
        return model
    if model.head == "gap" or model.config.get("features_only"):
        raise ConfigError(f"a {'gap' if model.head == 'gap' else 'features_only'} model has no fc/conv head to convert; "
                          "build the model with head='fc'")
    old = model.classifier
    new = make_classifier(head, model.num_features, model.hidden, model.num_outputs,
                          model.config["dropout"]).to(old[0].weight.device, old[0].weight.dtype)
    for index in (0, 3, 6):
        weight = old[index].weight
        new[index].weight.copy_(weight.reshape(new[index].weight.shape))
        new[index].bias.copy_(old[index].bias)
    new.train(old.training)
    model.classifier = new
    model.config["head"] = head
    return model


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: VGG, image_size: int | tuple[int, int] = 224) -> int:
    """Multiply-accumulates of one forward pass of one image (convs and linear layers)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    macs = 0
    hooks = []

    def conv_hook(module: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += out.shape[1] * out.shape[2] * out.shape[3] * kh * kw * module.in_channels // module.groups

    def linear_hook(module: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        macs += module.in_features * module.out_features

    with torch.device("meta"):
        meta = from_config(model.config).eval()
        x = torch.zeros(1, model.config["in_channels"], h, w)
    for module in meta.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
    with torch.no_grad():
        meta(x)
    return int(macs)


def describe(model: VGG) -> str:
    c = model.config
    bn = "_bn" if c["batch_norm"] else ""
    width = "" if math.isclose(c["width"], 1.0) else f", width {c['width']:g}"
    if c.get("features_only"):
        return f"VGG-{c['name']}{bn} (features only{width})"
    box = f", {c['box_head'].upper()} box head" if c.get("box_head") else ""
    return f"VGG-{c['name']}{bn} ({c['head']} head{box}, {c['num_classes']} classes{width})"
