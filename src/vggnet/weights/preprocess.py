"""The preprocessing a set of weights expects, as data that travels with the weights.

Every weights file carries ``metadata["preprocessing"]``::

    {"dataset": str, "channels": 1|3, "image_size": int, "scale": [S]|[Smin, Smax]|None,
     "test_scale": Q|None, "normalize": a data.normalize name, or "mean" (mean subtraction
     in units of pixel_scale: what Keras files and vggnet files before the named regimes say),
     "stats": {"mean": [...], "std": [...], ...},
     # only where not the defaults (RGB, pixel values in 0-1):
     "channel_order": "RGB"|"BGR", "pixel_scale": 1|255}

``mean``/``std`` are in ``channel_order`` and in units of ``pixel_scale`` (Keras' caffe mode:
BGR, 0-255, mean subtraction only). :func:`prepare` applies all of it; :func:`canonical`
folds the two extra keys into the model so pipelines that know only the standard keys
(the trainer's loaders) feed it correctly.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from vggnet.config import NORMALIZE
from vggnet.data.augment import Stats, convert_channels, normalize
from vggnet.errors import ConfigError, WeightsError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def imagenet(*, normalize: str = "standardize") -> dict[str, Any]:
    """torchvision's (and timm's ``tv_in1k``) ImageNet preprocessing: resize 256, crop 224."""
    return {"dataset": "imagenet", "channels": 3, "image_size": 224, "scale": [256], "test_scale": 256,
            "normalize": normalize, "stats": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}


def caffe() -> dict[str, Any]:
    """The paper's Caffe preprocessing, which keras.applications.vgg16.preprocess_input repeats
    ("caffe" mode): RGB -> BGR, 0-255, subtract the mean pixel (B, G, R)."""
    return {"dataset": "imagenet", "channels": 3, "image_size": 224, "scale": [256], "test_scale": 256,
            "normalize": "mean", "stats": {"mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]},
            "channel_order": "BGR", "pixel_scale": 255}


def imagenet_metadata(model: torch.nn.Module, *, source: str) -> dict[str, Any]:
    """Published torchvision/timm/Keras VGGs are ImageNet models: its classes and preprocessing."""
    meta: dict[str, Any] = {"model": dict(model.config), "source": source, "preprocessing": imagenet()}
    if model.config["num_classes"] == 1000:
        from torchvision.models import VGG16_Weights

        meta["classes"] = list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])
    return meta


def regime(pre: dict[str, Any]) -> str:
    """The data.normalize name of a preprocessing record: files that say "mean" (vggnet before the
    named regimes, at pixel_scale 1) meant [0, 1] units minus the mean."""
    mode = pre.get("normalize", "none")
    return "unit-mean" if mode == "mean" else mode


def _in_unit_range(pre: dict[str, Any]) -> tuple[str, Stats]:
    """(mode, stats) for images in 0-1 units and in the file's channel order: pixel_scale folded
    into mean and std (x*255 - m == (x - m/255) / (1/255))."""
    scale = float(pre.get("pixel_scale", 1))
    mode = regime(pre)
    if mode not in NORMALIZE:
        raise WeightsError(f"unknown normalize mode {mode!r} in the weights' preprocessing; "
                           f"known: mean, {', '.join(NORMALIZE)}")
    raw = pre.get("stats") or {}
    if mode != "none" and "mean" not in raw:
        raise WeightsError(f"the weights' preprocessing says normalize={mode!r} but records no stats.mean")
    channels = len(raw.get("mean", [])) or int(pre.get("channels", 3))
    mean = [float(m) / scale for m in raw.get("mean", [0.0] * channels)] if mode != "none" else [0.0] * channels
    std = raw.get("std") if mode == "standardize" else [1.0] * channels
    if scale == 1:
        return mode, Stats(mean, [float(s) for s in std] if std else [1.0] * channels)
    if mode in ("paper", "caffe"):
        raise WeightsError(f"normalize={mode!r} already means 0-255 pixel values; pixel_scale must not be set")
    return "standardize", Stats(mean, [float(s) / scale for s in std])


def prepare(images: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """uint8 images [N, C, H, W] (uint8, or float in 0-1) -> the float input the weights expect:
    channels converted, channel order, pixel scale, normalisation."""
    if images.ndim != 4:
        raise ConfigError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    pre = preprocessing or {}
    x = convert_channels(images, int(pre.get("channels", images.shape[1])))
    if pre.get("channel_order", "RGB") == "BGR":
        x = x.flip(1)
    mode, stats = _in_unit_range(pre)
    return normalize(x, stats, mode)


@torch.no_grad()
def canonical(model: torch.nn.Module) -> torch.nn.Module:
    """Fold ``channel_order`` BGR and ``pixel_scale`` into the model, in place: the first conv
    takes RGB and the stats become 0-1 units, so a pipeline that knows only mean/std/normalize
    (the trainer's loaders) feeds it exactly what the original expected."""
    meta = getattr(model, "metadata", None) or {}
    pre = copy.deepcopy(meta.get("preprocessing") or {})
    if pre.get("channel_order", "RGB") == "RGB" and float(pre.get("pixel_scale", 1)) == 1:
        return model
    mode, stats = _in_unit_range(pre)
    bgr = pre.pop("channel_order", "RGB") == "BGR"
    scale = float(pre.pop("pixel_scale", 1))
    if bgr:
        first = model.features[0]
        first.weight.copy_(first.weight.flip(1))
        stats = Stats(stats.mean[::-1], stats.std[::-1])
    pre.update(normalize=mode, stats=stats.to_dict(),
               folded=f"channel_order {'BGR' if bgr else 'RGB'} and pixel_scale {scale:g} folded into the weights")
    model.metadata = {**meta, "preprocessing": pre}
    return model
