"""Keras VGG16/VGG19 HDF5 files (keras.applications layout: block{n}_conv{m}, fc1, fc2,
predictions) in and out. Keras' caffe preprocessing (BGR, mean subtraction in 0-255) is recorded."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import torch

from vggnet.errors import WeightsError
from vggnet.files import atomic_write
from vggnet.model.architectures import CONFIGS
from vggnet.model.vgg import VGG, convert_head
from vggnet.weights import preprocess
from vggnet.weights.preprocess import imagenet_metadata

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
    model.metadata = imagenet_metadata(model, source=f"keras:{path.name}")
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
