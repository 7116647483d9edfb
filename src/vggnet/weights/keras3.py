"""Keras 3 VGG16/VGG19 files: ``.weights.h5`` (what ``model.save_weights()`` writes) in and out,
and native ``.keras`` archives (a zip holding ``config.json`` and ``model.weights.h5``) in.

Keras 3 stores each layer under ``layers/<class-named layer>/vars/<i>``: ``conv2d``,
``conv2d_1``, ... and ``dense``, ``dense_1``, ``dense_2``, numbered in model order (HDF5 lists
them alphabetically, ``conv2d_10`` before ``conv2d_2``), ``vars/0`` the kernel and ``vars/1``
the bias; kernels are HWIO as in Keras 2. The tensor conversions are keras.py's.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vggnet.errors import WeightsError
from vggnet.files import atomic_write
from vggnet.model.vgg import VGG
from vggnet.weights.keras import from_keras_arrays, to_keras_arrays

_NAMED = re.compile(r"^([a-z0-9_]+?)(?:_(\d+))?$")


def _order(name: str) -> tuple[str, int]:
    """'conv2d' -> ('conv2d', 0), 'conv2d_10' -> ('conv2d', 10): Keras 3's numbering."""
    match = _NAMED.match(name)
    if match is None:
        return name, 0
    return match[1], int(match[2]) if match[2] else 0


def _read_layers(handle: Any, source: str) -> dict[str, list[np.ndarray]]:
    """{layer name: [vars/0, vars/1, ...]} of the layers that hold variables."""
    if "layers" not in handle:
        raise WeightsError(f"keras3 file {source} has no 'layers' group (top level: "
                           f"{', '.join(list(handle)[:5]) or 'empty'}); not a Keras 3 weights file")
    layers = {}
    for name, group in handle["layers"].items():
        variables = group.get("vars")
        if variables is not None and len(variables):
            layers[name] = [variables[key][()] for key in sorted(variables, key=int)]
    return layers


def _from_layers(layers: dict[str, list[np.ndarray]], source: str, model_name: str | None) -> VGG:
    convs = sorted((n for n in layers if _order(n)[0] == "conv2d"), key=lambda n: _order(n)[1])
    dense = sorted((n for n in layers if _order(n)[0] == "dense"), key=lambda n: _order(n)[1])
    other = sorted(set(layers) - set(convs) - set(dense))
    what = f" (model '{model_name}')" if model_name else ""
    if not convs or other or len(dense) not in (0, 3):
        found = ", ".join(other[:4] or sorted(layers)[:4]) or "no layers with weights"
        raise WeightsError(f"keras3 file {source}{what} is not a Keras VGG: expected conv2d ... and 0 or 3 dense "
                           f"layers, found {len(convs)} conv2d, {len(dense)} dense and {found}")
    bad = [n for n in convs + dense if len(layers[n]) != 2]
    if bad:
        raise WeightsError(f"keras3 file {source}: layer {bad[0]} holds {len(layers[bad[0]])} variables, "
                           "not a kernel and a bias; not a Keras VGG")
    return from_keras_arrays([tuple(layers[n]) for n in convs], [tuple(layers[n]) for n in dense] or None,
                             source=f"keras3:{Path(source).name}")


def read_keras3(path: str | Path) -> VGG:
    """A Keras 3 ``.weights.h5`` or ``.keras`` file of keras.applications' VGG16/VGG19 (with or
    without top) as a VGG with the fc head; the config comes from the conv kernels."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    model_name = None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise WeightsError(f"keras3 archive {path} has no model.weights.h5 (it holds "
                                   f"{', '.join(names[:5])}); save it with model.save('x.keras') in Keras 3")
            if "config.json" in names:
                model_name = json.loads(archive.read("config.json")).get("config", {}).get("name")
            source: Any = io.BytesIO(archive.read("model.weights.h5"))
    else:
        source = path
    try:
        opened = h5py.File(source, "r")
    except OSError as exc:
        raise WeightsError(f"keras3 file {path} is not a readable HDF5 file ({str(exc)[:80]}); it is truncated "
                           "or not a Keras 3 file") from None
    with opened as handle:
        try:
            layers = _read_layers(handle, str(path))
        except (OSError, KeyError, ValueError) as exc:
            raise WeightsError(f"keras3 file {path} cannot be read ({str(exc)[:80]}); it is truncated or not a "
                               "Keras 3 file") from None
    return _from_layers(layers, str(path), model_name)


def write_keras3(model: VGG, path: str | Path) -> Path:
    """Write ``model`` as a Keras 3 ``.weights.h5`` that ``keras.applications.VGG16(weights=None)``
    (VGG19 for config E; ``classes=N`` for N classes) loads with ``load_weights``: the groups and
    the ``name`` attributes Keras 3.15 writes (checked against it: logits within 1e-4)."""
    import h5py

    convs, dense = to_keras_arrays(model, "keras3")
    # (Keras 3 path name, keras.applications layer name, variables)
    layers: list[tuple[str, str, tuple[np.ndarray, np.ndarray] | None]] = [("input_layer", "input_layer", None)]
    conv_left, block, conv = iter(convs), 1, 0
    for module in model.features:
        if isinstance(module, torch.nn.Conv2d):
            conv += 1
            n = sum(1 for path_name, _, _ in layers if path_name.startswith("conv2d"))
            layers.append(("conv2d" + (f"_{n}" if n else ""), f"block{block}_conv{conv}", next(conv_left)))
        elif isinstance(module, torch.nn.MaxPool2d):
            layers.append(("max_pooling2d" + (f"_{block - 1}" if block > 1 else ""), f"block{block}_pool", None))
            block, conv = block + 1, 0
    layers.append(("flatten", "flatten", None))
    layers += [("dense" + (f"_{i}" if i else ""), name, pair)
               for i, (name, pair) in enumerate(zip(("fc1", "fc2", "predictions"), dense))]
    model_name = {"D": "vgg16", "E": "vgg19"}.get(model.config["name"], f"vgg_{model.config['name'].lower()}")

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_group("vars").attrs["name"] = model_name
            for path_name, name, pair in layers:
                variables = f.create_group(f"layers/{path_name}/vars")
                variables.attrs["name"] = name
                for i, array in enumerate(pair or ()):
                    variables.create_dataset(str(i), data=np.ascontiguousarray(array, dtype=np.float32))

    atomic_write(path, write)
    return Path(path)
