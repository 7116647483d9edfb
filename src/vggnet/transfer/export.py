"""Deployment formats: ONNX (opset >= 17, dynamic batch) and TorchScript, with the weights'
preprocessing and class names embedded so the file alone says how to feed it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vggnet.errors import ConfigError, WeightsError
from vggnet.files import atomic_write
from vggnet.model.vgg import VGG, describe
from vggnet.weights.layout import EXPORTS, FORMATS, check_holds, formats_for

MIN_OPSET = 17

# File names -> the format they suggest, longest suffix first (.pt is TorchScript's and torch's).
NAMED = ((".weights.h5", "keras3"), (".h5", "keras"), (".hdf5", "keras"), (".onnx", "onnx"),
         (".safetensors", "vggnet"), (".pth", "torchvision"), (".torchscript", "torchscript"))


def format_from_name(path: str | Path) -> str | None:
    """The format a file name suggests (None: the name does not say)."""
    name = Path(path).name.lower()
    return next((fmt for suffix, fmt in NAMED if name.endswith(suffix)), None)


def choose_format(path: str | Path, fmt: str | None, model: VGG) -> tuple[str, str | None]:
    """(format, warning or None) for writing ``model`` to ``path``: ``fmt`` if given, else the one
    the name suggests; a warning when the name suggests another (a .weights.h5 written in the
    Keras 2 layout, which Keras 3 refuses, say). A name vggnet only reads (.keras, .caffemodel) is
    an error that lists the formats that can take ``model``."""
    name, suffix = Path(path).name, Path(path).suffix.lower()
    named = format_from_name(path)
    if suffix in (".keras", ".caffemodel"):
        keras = ("; Keras 3 loads a .weights.h5 with load_weights: give --out NAME.weights.h5"
                 if suffix == ".keras" and "keras3" in formats_for(model) else "")
        raise ConfigError(f"{name}: vggnet reads {suffix} files but does not write them; formats that can take "
                          f"this {describe(model)}: {', '.join(formats_for(model))}{keras}")
    if fmt is None:
        if named is None:
            raise ConfigError(f"cannot tell the format from the name {name}; give --format "
                              f"({', '.join(EXPORTS + FORMATS)})")
        return named, None
    compatible = {named, "timm"} if named == "vggnet" else {named}
    if named is not None and fmt not in compatible:
        return fmt, (f"{name} is named like a {named} file, but --format {fmt} writes {fmt}'s layout; "
                     f"rename it or use --format {named}")
    return fmt, None


class _Logits(nn.Module):
    """features -> head without the Python input checks, which do not trace. The fc head's
    adaptive pooling of a 1x1 map (32 px inputs) to 7x7 is a repeat, which ONNX can express."""

    def __init__(self, model: VGG) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.features(x)
        if self.model.head == "fc" and tuple(features.shape[-2:]) == (1, 1):
            return self.model.classifier(torch.flatten(features.expand(-1, -1, 7, 7), 1))
        return self.model.forward_head(features)


def example_input(model: VGG, image_size: int | None = None) -> torch.Tensor:
    """A zero batch of one image at the export size (the weights' image_size, at least the minimum)."""
    pre = (getattr(model, "metadata", None) or {}).get("preprocessing") or {}
    size = image_size or max(int(pre.get("image_size", 0)), model.min_input_size)
    if size < model.min_input_size:
        raise ConfigError(f"image size {size} is below the model's minimum input {model.min_input_size}")
    return torch.zeros(1, model.config["in_channels"], size, size)


def _metadata(model: VGG) -> dict[str, str]:
    meta = getattr(model, "metadata", None) or {}
    out = {"vggnet.model": json.dumps(model.config)}
    for key in ("preprocessing", "classes"):
        if key in meta:
            out[f"vggnet.{key}"] = json.dumps(meta[key])
    return out


def export_onnx(model: VGG, path: str | Path, *, image_size: int | None = None, opset: int = MIN_OPSET) -> Path:
    """ONNX with input "images" [batch, C, H, W] and output "logits" [batch, classes]; the batch
    axis is dynamic (and H, W for the conv and gap heads). Metadata props carry the config,
    preprocessing and classes as JSON."""
    import onnx

    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset} is too old; use {MIN_OPSET} or newer")
    wrapped = _Logits(model).eval()
    example = example_input(model, image_size)
    cells = example.shape[-1] // 32  # the fc head pools this map to 7x7; ONNX needs 1 or a multiple of 7
    if model.head == "fc" and cells != 1 and cells % 7:
        raise ConfigError(f"ONNX cannot express the fc head's 7x7 pooling of a {cells}x{cells} map; export at "
                          "--image-size 32 or a multiple of 224, or convert to the conv head")
    axes: dict[str, Any] = {"images": {0: "batch"}, "logits": {0: "batch"}}
    if model.head != "fc":
        axes["images"].update({2: "height", 3: "width"})

    def write(tmp: str) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
            # dynamo=False: the dynamo exporter needs onnxscript, which is not a dependency.
            torch.onnx.export(wrapped, (example,), tmp, dynamo=False, opset_version=opset,
                              input_names=["images"], output_names=["logits"], dynamic_axes=axes)
        proto = onnx.load(tmp)
        for key, value in _metadata(model).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, tmp)

    atomic_write(path, write)
    return Path(path)


def export_torchscript(model: VGG, path: str | Path, *, image_size: int | None = None) -> Path:
    """A traced TorchScript module (``torch.jit.load``); metadata in the extra file vggnet.json."""
    wrapped = _Logits(model).eval()
    extra = {"vggnet.json": json.dumps(_metadata(model))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice: TorchScript is what was asked for
        traced = torch.jit.trace(wrapped, example_input(model, image_size))
        atomic_write(path, lambda tmp: torch.jit.save(traced, tmp, _extra_files=extra))
    return Path(path)


def export(model: VGG, path: str | Path, fmt: str, *, image_size: int | None = None) -> Path:
    """Write ``model`` as ``fmt`` ("onnx" or "torchscript")."""
    if fmt in EXPORTS:
        check_holds(fmt, model)
    if fmt == "onnx":
        return export_onnx(model, path, image_size=image_size)
    if fmt == "torchscript":
        return export_torchscript(model, path, image_size=image_size)
    raise ConfigError(f"unknown export format '{fmt}'; valid: {', '.join(EXPORTS)}")


def max_difference(model: VGG, path: str | Path, fmt: str, x: torch.Tensor) -> float:
    """Largest |exported - PyTorch| logit difference on ``x`` (float input, already prepared)."""
    with torch.inference_mode():
        ref = _Logits(model).eval()(x)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out = torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])
    elif fmt == "torchscript":
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = torch.jit.load(str(path))(x)
    else:
        raise WeightsError(f"cannot check format '{fmt}'")
    return float((out - ref).abs().max())
