"""Keras VGG16/VGG19 files. This module: the legacy (Keras 2) HDF5 layout of keras.applications
(block{n}_conv{m}, fc1, fc2, predictions) in and out, and the tensor conversions both Keras
layouts share; keras3.py holds the Keras 3 ``.weights.h5`` and ``.keras`` layouts.
Keras' caffe preprocessing (BGR, mean subtraction in 0-255) is recorded."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vggnet.errors import WeightsError
from vggnet.files import atomic_write
from vggnet.model.vgg import VGG, convert_head
from vggnet.weights import preprocess
from vggnet.weights.layout import Pair, check_holds, vgg_arrays, vgg_from_arrays
from vggnet.weights.preprocess import imagenet_metadata

_KERAS_CONV = re.compile(r"^block(\d+)_conv(\d+)$")


def from_keras_arrays(convs: Sequence[Pair], dense: Sequence[Pair] | None, *, source: str) -> VGG:
    """A VGG from Keras arrays: conv kernels (kh, kw, in, out), dense kernels (in, out) with fc1's
    rows in the NHWC flatten order (h, w, c) of the 7x7 map. Records Keras' caffe preprocessing."""
    torch_convs = [(np.asarray(k).transpose(3, 2, 0, 1), b) for k, b in convs]
    fcs = None
    if dense:
        fc1 = np.asarray(dense[0][0])
        hidden, c = fc1.shape[1], fc1.shape[0] // 49
        if fc1.shape[0] != c * 49:
            raise WeightsError(f"{source}: fc1 takes {fc1.shape[0]} inputs, not a 7x7 map; not a Keras VGG")
        fcs = [(fc1.reshape(7, 7, c, hidden).transpose(3, 2, 0, 1).reshape(hidden, c * 49), dense[0][1])]
        fcs += [(np.asarray(k).T, b) for k, b in dense[1:]]
    model = vgg_from_arrays(torch_convs, fcs, source=source)
    model.metadata = imagenet_metadata(model, source=source)
    model.metadata["preprocessing"] = preprocess.caffe()
    if not dense:
        model.metadata["partial"] = "features only: the file has no fc layers; the classifier is untrained"
    return model


def to_keras_arrays(model: VGG, fmt: str = "keras") -> tuple[list[tuple[np.ndarray, np.ndarray]],
                                                             list[tuple[np.ndarray, np.ndarray]]]:
    """The inverse of :func:`from_keras_arrays`: (conv kernels and biases, fc1/fc2/predictions)."""
    check_holds(fmt, model)
    if model.head == "conv":
        model = convert_head(copy.deepcopy(model), "fc")
    convs, fcs = vgg_arrays(model)
    c, hidden = model.num_features, model.hidden
    fc1 = fcs[0][0].reshape(hidden, c, 7, 7).transpose(2, 3, 1, 0).reshape(c * 49, hidden)
    dense = [(fc1, fcs[0][1])] + [(np.ascontiguousarray(w.T), b) for w, b in fcs[1:]]
    return [(np.ascontiguousarray(w.transpose(2, 3, 1, 0)), b) for w, b in convs], dense


def _keras_layers(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{layer name: {"kernel", "bias"}} from a Keras HDF5 weights file (or a full-model .h5)."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise WeightsError(f"keras file {path} is not a readable HDF5 file ({str(exc)[:80]}); it is truncated or "
                           "not a Keras file") from None
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


def read_keras(path: str | Path) -> VGG:
    """A keras.applications VGG HDF5 file (block{n}_conv{m}, fc1, fc2, predictions) as a VGG
    with the fc head. A ``notop`` file (no fc layers) loads the features and leaves the
    classifier initialised."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    layers = _keras_layers(path)
    convs = sorted(((int(m[1]), int(m[2])), name) for name in layers if (m := _KERAS_CONV.match(name)))
    if not convs:
        raise WeightsError(f"keras (legacy .h5) file {path} has no block{{n}}_conv{{m}} layers "
                           f"(found: {', '.join(sorted(layers)[:5]) or 'no weight layers'}); not a Keras VGG file")
    top = all(k in layers for k in ("fc1", "fc2", "predictions"))
    dense = [(layers[n]["kernel"], layers[n]["bias"]) for n in ("fc1", "fc2", "predictions")] if top else None
    return from_keras_arrays([(layers[n]["kernel"], layers[n]["bias"]) for _, n in convs], dense,
                             source=f"keras:{path.name}")


def write_keras(model: VGG, path: str | Path) -> Path:
    """Write ``model`` in keras.applications' legacy HDF5 layout (Keras 2's ``load_weights``)."""
    import h5py

    convs, dense = to_keras_arrays(model)
    layers: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [("input_1", None, None)]
    block, conv, convs_left = 1, 0, iter(convs)
    for module in model.features:
        if isinstance(module, torch.nn.Conv2d):
            conv += 1
            layers.append((f"block{block}_conv{conv}", *next(convs_left)))
        elif isinstance(module, torch.nn.MaxPool2d):
            layers.append((f"block{block}_pool", None, None))
            block, conv = block + 1, 0
    layers += [("flatten", None, None)] + [(n, k, b) for n, (k, b) in zip(("fc1", "fc2", "predictions"), dense)]

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
                    group.create_dataset(f"{name}/kernel:0", data=kernel)
                    group.create_dataset(f"{name}/bias:0", data=bias)

    atomic_write(path, write)
    return Path(path)
