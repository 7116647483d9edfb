"""Every weights format behind one ``--weights SPEC``: a run directory, our safetensors, torchvision
(.pth), timm (safetensors or .pth), Keras (HDF5), or ``torchvision:NAME``.

Every loaded model carries ``model.metadata`` with its ``preprocessing`` (see
:mod:`vggnet.weights.preprocess`), so predict, eval, features and finetune feed it what it
was trained on. Nothing is unpickled unsafely: torch files go through ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from vggnet.errors import ConfigError, WeightsError
from vggnet.files import atomic_write
from vggnet.model.vgg import VGG, convert_head
from vggnet.weights import torchvision as tv
from vggnet.weights.keras import read_keras, write_keras
from vggnet.weights.native import (
    load_state_dict,
    load_weights,
    read_metadata,
    save_weights,
)
from vggnet.weights.preprocess import imagenet_metadata
from vggnet.weights.timm import from_timm, to_timm

FORMATS = ("vggnet", "torchvision", "timm", "keras")


def load_pretrained(spec: str | Path, *, head: str | None = None) -> VGG:
    """A model from ``spec``: a run directory, a file (.safetensors ours or timm, .pth/.pt
    torchvision or timm, .h5 Keras) or ``torchvision:vgg16[_bn]`` (downloaded, hash-checked).
    ``head`` converts between the fc and conv heads after loading."""
    text = str(spec)
    if text.startswith("torchvision:"):
        model = tv.published(text.split(":", 1)[1])
    else:
        path = Path(text)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise WeightsError(f"weights {text} not found: give a file, a run directory, or torchvision:NAME "
                               f"({', '.join(tv.NAMES)})")
        model = _load_file(path)
    if head is not None and head != model.head:
        convert_head(model, head)
    return model


def _load_file(path: Path) -> VGG:
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return read_keras(path)
    if suffix == ".safetensors" and "model" in read_metadata(path):
        return load_weights(path)
    if suffix not in (".safetensors", ".pth", ".pt", ".bin"):
        raise WeightsError(f"{path}: unknown weights format '{suffix}'; use .safetensors, .pth/.pt or .h5")
    state = load_state_dict(path)
    kind = detect_format(state)
    if kind == "timm":
        model = from_timm(state)
    elif kind == "torchvision":
        model = tv.from_torchvision(state)
    else:
        raise WeightsError(f"{path} is neither a vggnet file (no metadata), a torchvision VGG (features.N, "
                           "classifier.N) nor a timm VGG (pre_logits.fc1, head.fc)")
    model.metadata = imagenet_metadata(model, source=f"{kind}:{path.name}")
    return model


def detect_format(state: dict[str, torch.Tensor]) -> str:
    """'timm', 'torchvision' or 'unknown' from a state dict's key names."""
    if "pre_logits.fc1.weight" in state and "head.fc.weight" in state:
        return "timm"
    if "classifier.6.weight" in state and "features.0.weight" in state:
        return "torchvision"
    return "unknown"


def save_as(model: VGG, path: str | Path, fmt: str = "vggnet") -> Path:
    """Write ``model`` as ``fmt``: vggnet (safetensors + config and metadata), torchvision
    (.pth tensor dict, loadable with weights_only=True), timm (safetensors) or keras (.h5)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown weights format '{fmt}'; valid: {', '.join(FORMATS)}")
    meta = {k: v for k, v in (getattr(model, "metadata", None) or {}).items() if k != "model"}
    if fmt == "vggnet":
        return save_weights(model, path, **meta)
    if fmt == "keras":
        return write_keras(model, path)
    if fmt == "timm":
        state = to_timm(model)
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    else:
        state = tv.to_torchvision(model)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    return Path(path)
