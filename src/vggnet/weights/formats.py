"""Every weights format behind one ``--weights SPEC``: a run directory, our safetensors, torchvision
(.pth), timm (safetensors or .pth), Keras 2 (HDF5), Keras 3 (.weights.h5, .keras), Caffe
(.caffemodel), or ``torchvision:NAME``.

Every loaded model carries ``model.metadata`` with its ``preprocessing`` (see
:mod:`vggnet.weights.preprocess`), so predict, eval, features and finetune feed it what it
was trained on. Nothing is unpickled unsafely: torch files go through ``weights_only=True``.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from vggnet.errors import ConfigError, WeightsError
from vggnet.files import atomic_write
from vggnet.model.architectures import ALIASES
from vggnet.model.vgg import VGG, convert_head
from vggnet.weights import torchvision as tv
from vggnet.weights.caffe import read_caffe
from vggnet.weights.keras import read_keras, write_keras
from vggnet.weights.keras3 import read_keras3, write_keras3
from vggnet.weights.layout import FORMATS, check_holds
from vggnet.weights.native import (
    load_state_dict,
    load_weights,
    read_metadata,
    save_weights,
)
from vggnet.weights import preprocess
from vggnet.weights.preprocess import imagenet_metadata
from vggnet.weights.timm import from_timm, to_timm

ACCEPTED = ("a run directory, vggnet or timm .safetensors, torchvision or timm .pth/.pt/.bin, Keras 2 .h5, "
            "Keras 3 .weights.h5 or .keras, Caffe .caffemodel, torchvision:NAME")


def load_pretrained(spec: str | Path, *, head: str | None = None) -> VGG:
    """A model from ``spec``: a run directory, a file (.safetensors ours or timm, .pth/.pt
    torchvision or timm, .h5 Keras 2 or 3, .weights.h5/.keras Keras 3, .caffemodel Caffe) or
    ``torchvision:vgg16[_bn]`` (downloaded, hash-checked). ``head`` converts between the fc and
    conv heads after loading."""
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


def sniff(path: Path) -> str:
    """What a file holds, from its first bytes: 'hdf5', 'keras3-archive', 'torchscript', 'torch-zip',
    'zip', 'truncated-zip', 'safetensors', 'pickle' or 'unknown' (protobuf files, Caffe's and ONNX's, have no magic)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "truncated-zip"
        if "model.weights.h5" in names:
            return "keras3-archive"
        if any(n.endswith("constants.pkl") for n in names):
            return "torchscript"
        return "torch-zip" if any(n.endswith("data.pkl") for n in names) else "zip"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _is_keras3(path: Path) -> bool | None:
    """Whether an HDF5 file has Keras 3's layout (None: it does not open)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return "layers" in handle
    except OSError:
        return None


def _read_hdf5(path: Path) -> VGG:
    """A Keras file, in the layout its content has; a name that says the other one is a warning
    (Keras 3's load_weights takes only a .weights.h5 in its own layout, and reads .h5 as Keras 2's)."""
    named = "keras3" if path.name.lower().endswith(".weights.h5") else (
        "keras" if path.suffix.lower() in (".h5", ".hdf5") else None)
    keras3 = _is_keras3(path)
    if keras3 is None:  # unreadable: the reader of the name's layout says so
        return read_keras(path) if named == "keras" else read_keras3(path)
    held = "keras3" if keras3 else "keras"
    if named is not None and named != held:
        words = {"keras3": "Keras 3's (layers/.../vars)", "keras": "Keras 2's (block{n}_conv{m})"}
        warnings.warn(f"{path.name} is named like a {named} file but holds {words[held]} layout; read as "
                      f"{held}. Keras 3's load_weights would misread it: rename it "
                      f"{'NAME.weights.h5' if held == 'keras3' else 'NAME.h5'}", stacklevel=3)
    return read_keras3(path) if keras3 else read_keras(path)


SIDECAR = ".vggnet.json"  # beside a foreign-format file: the preprocessing and classes it cannot hold
CARRIED = ("preprocessing", "classes", "source")


def sidecar(path: str | Path) -> Path:
    return Path(str(path) + SIDECAR)


def _write_sidecar(model: VGG, path: str | Path) -> None:
    """Foreign formats hold tensors only: the preprocessing the weights need (and their class
    names) go to FILE.vggnet.json, which load_pretrained reads back, so a reloaded model is fed
    exactly as before the export."""
    meta = getattr(model, "metadata", None) or {}
    carried = {k: meta[k] for k in CARRIED if k in meta}
    if carried:
        atomic_write(sidecar(path), lambda tmp: Path(tmp).write_text(json.dumps(carried, indent=1)))


def _read_sidecar(model: VGG, path: Path) -> VGG:
    side = sidecar(path)
    if side.is_file():
        try:
            carried = json.loads(side.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{side} is not readable JSON ({str(exc)[:80]}); delete it to use {path.name}'s "
                               "default preprocessing") from None
        if not isinstance(carried, dict):
            raise WeightsError(f"{side} must hold a JSON object with {', '.join(CARRIED)}")
        model.metadata = {**(getattr(model, "metadata", None) or {}),
                          **{k: carried[k] for k in CARRIED if k in carried}}
    return model


def _load_file(path: Path) -> VGG:
    return _read_sidecar(_read_file(path), path)


def _read_file(path: Path) -> VGG:
    name, suffix = path.name.lower(), path.suffix.lower()
    if path.is_file() and path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes)")
    kind = sniff(path)
    if suffix == ".caffemodel":
        if kind != "unknown":  # protobuf has no magic; these files have theirs
            raise WeightsError(f"{path}: named .caffemodel but not a Caffe NetParameter (detected: {kind} "
                               f"content); accepted: {ACCEPTED}")
        return read_caffe(path)
    if suffix == ".keras" or kind == "keras3-archive":
        return read_keras3(path)
    if kind == "hdf5":
        return _read_hdf5(path)
    if name.endswith(".weights.h5"):  # not HDF5 inside: the readers say what is wrong
        return read_keras3(path)
    if suffix in (".h5", ".hdf5"):
        return read_keras(path)
    if suffix == ".safetensors" and "model" in read_metadata(path):
        return load_weights(path)
    if kind not in ("safetensors", "torch-zip", "pickle"):
        raise WeightsError(f"{path}: not a weights file vggnet reads (detected: {kind} content, suffix "
                           f"'{suffix or 'none'}'); accepted: {ACCEPTED}")
    if kind == "safetensors" and suffix != ".safetensors" and "model" in read_metadata(path):
        return load_weights(path)
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
    (.pth tensor dict, loadable with weights_only=True), timm (safetensors), keras (Keras 2
    .h5) or keras3 (Keras 3 .weights.h5). A format that cannot hold the model is an error that
    says what it holds and which formats can."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown weights format '{fmt}'; valid: {', '.join(FORMATS)}")
    check_holds(fmt, model)
    meta = {k: v for k, v in (getattr(model, "metadata", None) or {}).items() if k != "model"}
    if fmt == "vggnet":
        return save_weights(model, path, **meta)
    if fmt == "keras":
        write_keras(model, path)
    elif fmt == "keras3":
        write_keras3(model, path)
    elif fmt == "timm":
        state = to_timm(model)
        atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    else:
        state = tv.to_torchvision(model)
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    _write_sidecar(model, path)
    return Path(path)


def expected_input(model: VGG) -> str:
    """The input the weights expect, in words (their recorded preprocessing)."""
    pre = (getattr(model, "metadata", None) or {}).get("preprocessing")
    if not pre:
        return "input as the model was trained (no preprocessing recorded)"
    stats = pre.get("stats") or {}
    text = f"input {pre.get('channel_order', 'RGB')}, 0-{255 if float(pre.get('pixel_scale', 1)) == 255 else 1}"
    if pre.get("normalize") in ("mean", "standardize"):
        text += f", minus mean {[round(float(m), 3) for m in stats.get('mean', [])]}"
    if pre.get("normalize") == "standardize":
        text += f", divided by std {[round(float(v), 3) for v in stats.get('std', [])]}"
    return text


def _usual(fmt: str) -> dict:
    return preprocess.caffe() if fmt in ("keras", "keras3") else preprocess.imagenet()


def _same_input(a: dict, b: dict) -> bool:
    keys = ("channel_order", "pixel_scale", "normalize")
    defaults = {"channel_order": "RGB", "pixel_scale": 1}
    if any(a.get(k, defaults.get(k)) != b.get(k, defaults.get(k)) for k in keys):
        return False
    return all(np.allclose(a.get("stats", {}).get(k, [0]), b.get("stats", {}).get(k, [0]), atol=1e-3)
               for k in ("mean", "std") if a.get("normalize") != "none")


def how_to_load(fmt: str, model: VGG, path: str | Path) -> str:
    """How the framework of ``fmt`` loads the file ``save_as`` wrote, and the input it expects
    (foreign files cannot record it, so it is said, with a warning when it is not that
    framework's usual preprocessing)."""
    c = model.config
    tv_name = {v: k for k, v in ALIASES.items()}.get(c["name"], "vgg?") + ("_bn" if c["batch_norm"] else "")
    keras_name = {"D": "VGG16", "E": "VGG19"}.get(c["name"])
    classes = "" if c["num_classes"] == 1000 else f", classes={c['num_classes']}"
    if fmt == "vggnet":
        return f"vggnet: --weights {path} (config, preprocessing and classes travel in the file)"
    if fmt == "torchvision":
        call = (f"torchvision.models.{tv_name}(num_classes={c['num_classes']}).load_state_dict("
                f"torch.load('{path}', weights_only=True))")
    elif fmt == "timm":
        call = (f"timm.create_model('{tv_name}', num_classes={c['num_classes']}, pretrained=True, "
                f"pretrained_cfg_overlay=dict(file='{path}'))")
    else:
        call = (f"keras.applications.{keras_name}(weights=None{classes}).load_weights('{path}')" if keras_name
                else f"load_weights('{path}') into a Keras VGG-{c['name']} built layer by layer (keras.applications "
                     "has only VGG16 and VGG19)")
        call = f"{'Keras 3' if fmt == 'keras3' else 'Keras 2'}: {call}"
    if not np.isclose(c["width"], 1.0):
        call += (f" (this net is at width {c['width']:g} and that constructor builds width 1: build the same "
                 f"layers at width {c['width']:g} to load it; vggnet --weights reads the file as it is)")
    pre = (getattr(model, "metadata", None) or {}).get("preprocessing")
    usual = "" if pre and _same_input(pre, _usual(fmt)) else f" (not {fmt}'s usual preprocessing: feed exactly this)"
    return f"{call}; {expected_input(model)}{usual}"
