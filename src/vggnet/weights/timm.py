"""timm's VGG state dicts (FC1/FC2 stored as 7x7 and 1x1 convs) in and out."""

from __future__ import annotations

import torch

from vggnet.model.vgg import VGG
from vggnet.weights.torchvision import from_torchvision, to_torchvision


def from_timm(state: dict[str, torch.Tensor], *, head: str = "fc") -> VGG:
    """Build the VGG matching a timm ``vgg11..vgg19[_bn]`` state dict (FC1/FC2 as convs)."""
    renamed = {}
    for key, value in state.items():
        for old, new in (("pre_logits.fc1.", "classifier.0."), ("pre_logits.fc2.", "classifier.3."),
                         ("head.fc.", "classifier.6.")):
            if key.startswith(old):
                key = new + key[len(old):]
                value = value.flatten(1) if key.endswith("weight") else value
        renamed[key] = value
    return from_torchvision(renamed, head=head)


def to_timm(model: VGG) -> dict[str, torch.Tensor]:
    """A state dict that timm's matching ``vggNN[_bn]`` loads."""
    state = to_torchvision(model, "timm")
    c, hidden = model.num_features, model.hidden
    out = {}
    for key, value in state.items():
        if key.startswith("classifier.0."):
            key = "pre_logits.fc1." + key.split(".", 2)[2]
            value = value.reshape(hidden, c, 7, 7) if value.ndim == 2 else value
        elif key.startswith("classifier.3."):
            key = "pre_logits.fc2." + key.split(".", 2)[2]
            value = value.reshape(hidden, hidden, 1, 1) if value.ndim == 2 else value
        elif key.startswith("classifier.6."):
            key = "head.fc." + key.split(".", 2)[2]
        out[key] = value.contiguous()
    return out
