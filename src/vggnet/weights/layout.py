"""What the weights formats share: what each can hold (said once, for every writer's error),
which Table 1 config a list of conv kernels is, and a VGG built from (or taken apart into)
torch-layout arrays. Each foreign reader and writer only renames and transposes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vggnet.errors import WeightsError
from vggnet.model.architectures import ALIASES, CONFIGS
from vggnet.model.vgg import VGG, _scaled, describe

Pair = tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]

FORMATS = ("vggnet", "torchvision", "timm", "keras", "keras3")  # weights formats: written and read back
EXPORTS = ("onnx", "torchscript")  # deployment formats: written, run elsewhere

# What each format can hold, said once: every writer's error, `vggnet export --help` and docs/transfer.md.
HOLDS = {
    "vggnet": "every config, head and option",
    "torchvision": "A, B, D, E (vgg11/13/16/19), with or without batch norm, fc head (conv is converted)",
    "timm": "A, B, D, E (vgg11/13/16/19), with or without batch norm, fc head (conv is converted)",
    "keras": "no batch norm or LRN, fc head (conv is converted)",
    "keras3": "no batch norm or LRN, fc head (conv is converted)",
    "onnx": "every config and head, with logits out (not a features_only model)",
    "torchscript": "every config and head, with logits out (not a features_only model)",
}
TORCHVISION_LETTERS = tuple(v for k, v in ALIASES.items() if "lrn" not in k)  # A, B, D, E


def cannot_hold(fmt: str, model: VGG) -> bool:
    """Whether ``fmt`` lacks a place for something in ``model`` (see HOLDS)."""
    c = model.config
    if c.get("features_only"):
        return fmt != "vggnet"
    if fmt in ("torchvision", "timm"):
        return c["name"] not in TORCHVISION_LETTERS or model.head == "gap"
    if fmt in ("keras", "keras3"):
        return c["batch_norm"] or c["name"] == "A-LRN" or model.head == "gap"
    return False


def formats_for(model: VGG) -> list[str]:
    """The formats, weights and deployment, that can hold ``model``."""
    return [fmt for fmt in FORMATS + EXPORTS if not cannot_hold(fmt, model)]


def check_holds(fmt: str, model: VGG) -> None:
    """One error for every writer: what ``fmt`` holds, and the formats that can take ``model``."""
    if cannot_hold(fmt, model):
        raise WeightsError(f"{fmt} cannot hold this {describe(model)}: {fmt} holds {HOLDS[fmt]}; formats that "
                           f"can: {', '.join(formats_for(model))}")


def conv_plan(letter: str) -> list[tuple[int, int]]:
    """(kernel size, output channels at full width) of every conv of a Table 1 config."""
    return [(3, v) if isinstance(v, int) else (v[1], v[0]) for v in CONFIGS[letter] if not isinstance(v, str)]


def infer_letter(convs: Sequence[tuple[int, int]], *, width: float, source: str) -> str:
    """The Table 1 config whose convs are ``(kernel size, output channels)`` at ``width``
    (A-LRN is left out: no foreign format stores an LRN layer)."""
    for letter in CONFIGS:
        if letter != "A-LRN" and [(k, _scaled(c, width)) for k, c in conv_plan(letter)] == list(convs):
            return letter
    shown = ", ".join(f"{k}x{k}:{c}" for k, c in convs[:6]) + (" ..." if len(convs) > 6 else "")
    raise WeightsError(f"{source}: its {len(convs)} convs ({shown}) match no VGG config of Table 1 "
                       "(A, B, C, D, E); it holds another architecture")


def vgg_from_arrays(convs: Sequence[Pair], fcs: Sequence[Pair] | None, *, source: str) -> VGG:
    """A VGG with the fc head from torch-layout arrays: conv weights (out, in, kh, kw) and, if the
    file has them, fc6/fc7/fc8 weights (out, in) with fc6's inputs in torch's (c, h, w) order."""
    if not convs:
        raise WeightsError(f"{source}: no conv layers found")
    weights = [torch.as_tensor(np.asarray(w)) for w, _ in convs]
    if any(w.ndim != 4 for w in weights):
        raise WeightsError(f"{source}: a conv kernel is not 4-D; not VGG weights")
    width = weights[0].shape[0] / 64
    letter = infer_letter([(w.shape[-1], w.shape[0]) for w in weights], width=width, source=source)
    num_classes = int(np.asarray(fcs[2][0]).shape[0]) if fcs else 1000
    model = VGG(letter, num_classes=num_classes, head="fc", in_channels=weights[0].shape[1], width=width)
    state = model.state_dict()
    conv_index = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    for index, weight, (_, bias) in zip(conv_index, weights, convs):
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = weight, torch.as_tensor(np.asarray(bias))
    for index, (weight, bias) in zip((0, 3, 6), fcs or ()):
        weight = torch.as_tensor(np.asarray(weight))
        expected = state[f"classifier.{index}.weight"].shape
        if weight.numel() != expected.numel():
            raise WeightsError(f"{source}: fc{6 + index // 3} has shape {tuple(weight.shape)}, a VGG-{letter} at "
                               f"width {width:g} needs {tuple(expected)}")
        state[f"classifier.{index}.weight"] = weight.reshape(expected)
        state[f"classifier.{index}.bias"] = torch.as_tensor(np.asarray(bias))
    try:
        model.load_state_dict({k: v.contiguous().float() for k, v in state.items()})
    except RuntimeError as exc:
        raise WeightsError(f"{source}: layer shapes do not fit a VGG-{letter} ({str(exc).splitlines()[-1][:120]})") \
            from None
    return model


def vgg_arrays(model: VGG) -> tuple[list[Pair], list[Pair]]:
    """The inverse: ([(conv weight, bias)...], [(fc6...), (fc7...), (fc8...)]) as float32 numpy
    arrays in torch layout, the fc head's (the conv head converted)."""
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    convs = [(state[f"features.{i}.weight"].numpy(), state[f"features.{i}.bias"].numpy())
             for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    fcs = [(state[f"classifier.{i}.weight"].flatten(1).numpy(), state[f"classifier.{i}.bias"].numpy())
           for i in (0, 3, 6)]
    return convs, fcs
