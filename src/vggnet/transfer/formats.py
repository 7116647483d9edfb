"""Weights from other frameworks, in and out: torchvision (.pth), timm (safetensors), Keras
(HDF5) and our own safetensors, behind one ``--weights SPEC``.

Every loaded model carries ``model.metadata`` with its ``preprocessing`` (see
:mod:`vggnet.transfer.preprocess`), so predict, eval, features and finetune feed it what it
was trained on. Nothing is unpickled unsafely: torch files go through ``weights_only=True``.
"""

from __future__ import annotations

import copy
import re
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from vggnet.errors import ConfigError, WeightsError
from vggnet.model.architectures import CONFIGS
from vggnet.model.vgg import VGG, convert_head
from vggnet.model.weights import (atomic_write, from_torchvision, load_state_dict, load_weights, read_metadata,
                                  save_weights, to_torchvision)
from vggnet.transfer import preprocess

FORMATS = ("vggnet", "torchvision", "timm", "keras")
TORCHVISION_NAMES = tuple(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn"))


def load_pretrained(spec: str | Path, *, head: str | None = None) -> VGG:
    """A model from ``spec``: a run directory, a file (.safetensors ours or timm, .pth/.pt
    torchvision or timm, .h5 Keras) or ``torchvision:vgg16[_bn]`` (downloaded, hash-checked).
    ``head`` converts between the fc and conv heads after loading."""
    text = str(spec)
    if text.startswith("torchvision:"):
        model = _torchvision_published(text.split(":", 1)[1])
    else:
        path = Path(text)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise WeightsError(f"weights {text} not found: give a file, a run directory, or torchvision:NAME "
                               f"({', '.join(TORCHVISION_NAMES)})")
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
        model = from_torchvision(state)
    else:
        raise WeightsError(f"{path} is neither a vggnet file (no metadata), a torchvision VGG (features.N, "
                           "classifier.N) nor a timm VGG (pre_logits.fc1, head.fc)")
    model.metadata = _imagenet_metadata(model, source=f"{kind}:{path.name}")
    return model


def detect_format(state: dict[str, torch.Tensor]) -> str:
    """'timm', 'torchvision' or 'unknown' from a state dict's key names."""
    if "pre_logits.fc1.weight" in state and "head.fc.weight" in state:
        return "timm"
    if "classifier.6.weight" in state and "features.0.weight" in state:
        return "torchvision"
    return "unknown"


def _imagenet_metadata(model: VGG, *, source: str) -> dict[str, Any]:
    """Published torchvision/timm/Keras VGGs are ImageNet models: its classes and preprocessing."""
    meta: dict[str, Any] = {"model": dict(model.config), "source": source, "preprocessing": preprocess.imagenet()}
    if model.config["num_classes"] == 1000:
        from torchvision.models import VGG16_Weights

        meta["classes"] = list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])
    return meta


# ---------------------------------------------------------------- torchvision downloads


def _torchvision_published(name: str) -> VGG:
    from torchvision.models import get_model_weights

    name = name.strip().lower()
    if name not in TORCHVISION_NAMES:
        raise WeightsError(f"unknown torchvision VGG '{name}'; published: {', '.join(TORCHVISION_NAMES)}")
    weights = get_model_weights(name).IMAGENET1K_V1
    path = fetch(weights.url, label=f"torchvision:{name}")
    model = from_torchvision(load_state_dict(path))
    model.metadata = _imagenet_metadata(model, source=f"torchvision:{name}")
    model.metadata["accuracy"] = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return model


def fetch(url: str, *, label: str) -> Path:
    """The file at ``url`` from the torch hub cache, downloading it (hash-checked against the
    prefix in its name, as torchvision names its files) when it is not there yet."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    match = torch.hub.HASH_REGEX.search(target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=match.group(1) if match else None)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"cannot download {label} (no network: {str(reason)[:80]}); download {url} "
                           f"elsewhere and pass the file path, or put it in {target.parent}") from None
    except RuntimeError as exc:  # torch.hub's hash mismatch
        raise WeightsError(f"download of {label} is corrupt ({str(exc)[:100]}); retry, or download {url} "
                           "elsewhere and pass the file path") from None
    return target


# ---------------------------------------------------------------- timm


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
    state = to_torchvision(model)
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


# ---------------------------------------------------------------- Keras (keras.applications HDF5)

_KERAS_CONV = re.compile(r"^block(\d+)_conv(\d+)$")


def _keras_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {"kernel", "bias"}} from a Keras HDF5 weights file (or a full-model .h5)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"{path} is not a readable HDF5 file ({str(exc)[:80]})") from None
    layers: dict[str, dict[str, np.ndarray]] = {}
    with handle:
        root = handle["model_weights"] if "model_weights" in handle else handle
        for name, group in root.items():
            if not isinstance(group, h5py.Group):
                continue
            arrays: list[np.ndarray] = []
            group.visititems(lambda _n, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
            kernel = [a for a in arrays if a.ndim >= 2]
            bias = [a for a in arrays if a.ndim == 1]
            if len(kernel) == 1 and len(bias) == 1:
                layers[name] = {"kernel": kernel[0], "bias": bias[0]}
    return layers


def _letter_of(kernel_sizes: list[list[int]], path: Path) -> str:
    for letter, layers in CONFIGS.items():
        if "L" in layers:
            continue
        blocks, block = [], []
        for item in layers:
            if item == "M":
                blocks.append(block)
                block = []
            else:
                block.append(3 if isinstance(item, int) else item[1])
        if blocks == kernel_sizes:
            return letter
    raise WeightsError(f"{path}: the blockN_convM layers ({[len(b) for b in kernel_sizes]} convs per block) "
                       "match no VGG config of Table 1")


def read_keras(path: str | Path) -> VGG:
    """A keras.applications VGG HDF5 file (block{n}_conv{m}, fc1, fc2, predictions) as a VGG
    with the fc head. Keras' caffe preprocessing (BGR, mean subtraction in 0-255) is recorded.
    A ``notop`` file (no fc layers) loads the features and leaves the classifier initialised."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    layers = _keras_layers(path)
    convs = sorted(((int(m[1]), int(m[2])), name) for name in layers if (m := _KERAS_CONV.match(name)))
    if not convs:
        raise WeightsError(f"{path} has no block{{n}}_conv{{m}} layers: not a Keras VGG weights file")
    sizes: list[list[int]] = [[] for _ in range(max(b for (b, _), _ in convs))]
    for (block, _), name in convs:
        sizes[block - 1].append(layers[name]["kernel"].shape[0])
    letter = _letter_of(sizes, path)
    first = layers[convs[0][1]]["kernel"]
    top = all(k in layers for k in ("fc1", "fc2", "predictions"))
    num_classes = layers["predictions"]["kernel"].shape[1] if top else 1000
    model = VGG(letter, num_classes=num_classes, head="fc", in_channels=first.shape[2], width=first.shape[3] / 64)
    state = model.state_dict()
    conv_index = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    for index, (_, name) in zip(conv_index, convs):
        state[f"features.{index}.weight"] = torch.from_numpy(layers[name]["kernel"]).permute(3, 2, 0, 1)
        state[f"features.{index}.bias"] = torch.from_numpy(layers[name]["bias"])
    if top:
        c, hidden = model.num_features, model.hidden
        fc1 = torch.from_numpy(layers["fc1"]["kernel"])  # rows in NHWC flatten order (h, w, c)
        state["classifier.0.weight"] = fc1.reshape(7, 7, c, hidden).permute(3, 2, 0, 1).reshape(hidden, c * 49)
        state["classifier.3.weight"] = torch.from_numpy(layers["fc2"]["kernel"]).T
        state["classifier.6.weight"] = torch.from_numpy(layers["predictions"]["kernel"]).T
        for index, name in ((0, "fc1"), (3, "fc2"), (6, "predictions")):
            state[f"classifier.{index}.bias"] = torch.from_numpy(layers[name]["bias"])
    try:
        model.load_state_dict({k: v.contiguous().float() for k, v in state.items()})
    except RuntimeError as exc:
        raise WeightsError(f"{path}: layer shapes do not fit a VGG-{letter} ({str(exc).splitlines()[-1][:120]})") \
            from None
    model.metadata = _imagenet_metadata(model, source=f"keras:{path.name}")
    model.metadata["preprocessing"] = preprocess.keras_caffe()
    if not top:
        model.metadata["partial"] = "features only: the file has no fc1/fc2/predictions; the classifier is untrained"
    return model


def write_keras(model: VGG, path: str | Path) -> Path:
    """Write ``model`` in keras.applications' HDF5 layout (what ``read_keras`` and Keras read)."""
    import h5py

    if model.config["batch_norm"] or model.config["name"] == "A-LRN":
        raise WeightsError("Keras VGGs have no batch norm or LRN; export this model as vggnet or torchvision")
    if model.head == "gap":
        raise WeightsError("Keras VGGs have the fc head; this model has 'gap'")
    if model.head == "conv":
        model = convert_head(copy.deepcopy(model), "fc")
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    c, hidden = model.num_features, model.hidden
    layers: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [("input_1", None, None)]
    block, conv = 1, 0
    for index, module in enumerate(model.features):
        if isinstance(module, torch.nn.Conv2d):
            conv += 1
            layers.append((f"block{block}_conv{conv}", state[f"features.{index}.weight"].permute(2, 3, 1, 0).numpy(),
                           state[f"features.{index}.bias"].numpy()))
        elif isinstance(module, torch.nn.MaxPool2d):
            layers.append((f"block{block}_pool", None, None))
            block, conv = block + 1, 0
    fc1 = state["classifier.0.weight"].reshape(hidden, c, 7, 7).permute(2, 3, 1, 0).reshape(c * 49, hidden)
    layers += [("flatten", None, None), ("fc1", fc1.numpy(), state["classifier.0.bias"].numpy()),
               ("fc2", state["classifier.3.weight"].T.numpy(), state["classifier.3.bias"].numpy()),
               ("predictions", state["classifier.6.weight"].T.numpy(), state["classifier.6.bias"].numpy())]

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["layer_names"] = np.array([n.encode() for n, _, _ in layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.15.0"
            for name, kernel, bias in layers:
                group = f.create_group(name)
                names = [] if kernel is None else [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
                group.attrs["weight_names"] = np.array(names, dtype="S")
                if kernel is not None:
                    group.create_dataset(f"{name}/kernel:0", data=np.ascontiguousarray(kernel))
                    group.create_dataset(f"{name}/bias:0", data=bias)

    atomic_write(path, write)
    return Path(path)


# ---------------------------------------------------------------- out


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
        state = to_torchvision(model)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    return Path(path)
