"""The preprocessing a set of weights expects, as data that travels with the weights.

Every weights file carries ``metadata["preprocessing"]``::

    {"dataset": str, "channels": 1|3, "image_size": int, "scale": [S]|[Smin, Smax]|None,
     "test_scale": Q|None, "normalize": "mean"|"standardize"|"none",
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

from vggnet.errors import ConfigError, WeightsError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def imagenet(*, normalize: str = "standardize") -> dict[str, Any]:
    """torchvision's (and timm's ``tv_in1k``) ImageNet preprocessing: resize 256, crop 224."""
    return {"dataset": "imagenet", "channels": 3, "image_size": 224, "scale": [256], "test_scale": 256,
            "normalize": normalize, "stats": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}


def keras_caffe() -> dict[str, Any]:
    """keras.applications.vgg16.preprocess_input: RGB -> BGR, subtract the ImageNet mean in 0-255."""
    return {"dataset": "imagenet", "channels": 3, "image_size": 224, "scale": [256], "test_scale": 256,
            "normalize": "mean", "stats": {"mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0]},
            "channel_order": "BGR", "pixel_scale": 255}


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Gray -> RGB by repetition, RGB -> gray by ITU-R 601 luma; other counts are an error."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
        return (images.float() * luma).sum(1, keepdim=True)
    raise ConfigError(f"cannot convert {have}-channel images to {channels} channels")


def prepare(images: torch.Tensor, preprocessing: dict[str, Any]) -> torch.Tensor:
    """uint8 images [N, C, H, W] (any channel count the weights can take) -> the float input
    the weights expect: channels converted, channel order, pixel scale, normalisation."""
    if images.ndim != 4:
        raise ConfigError(f"expected images [N, C, H, W], got shape {tuple(images.shape)}")
    pre = preprocessing or {}
    x = convert_channels(images, int(pre.get("channels", images.shape[1]))).float()
    x = x * (float(pre.get("pixel_scale", 1)) / 255.0)
    if pre.get("channel_order", "RGB") == "BGR":
        x = x.flip(1)
    mode = pre.get("normalize", "none")
    if mode == "none":
        return x
    stats = pre.get("stats") or {}
    if "mean" not in stats:
        raise WeightsError(f"preprocessing says normalize={mode!r} but records no stats.mean")
    mean = torch.tensor(stats["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    x = x - mean
    if mode == "standardize":
        x = x / torch.tensor(stats["std"], dtype=torch.float32).view(1, -1, 1, 1)
    elif mode != "mean":
        raise WeightsError(f"unknown normalize mode {mode!r} in the weights' preprocessing")
    return x


@torch.no_grad()
def canonical(model: torch.nn.Module) -> torch.nn.Module:
    """Fold ``channel_order`` BGR and ``pixel_scale`` into the model, in place: the first conv
    takes RGB and the stats become 0-1 units ("standardize", std = std / pixel_scale), so any
    pipeline that knows only mean/std feeds it exactly what the original expected."""
    meta = getattr(model, "metadata", None) or {}
    pre = copy.deepcopy(meta.get("preprocessing") or {})
    if pre.get("channel_order", "RGB") == "RGB" and float(pre.get("pixel_scale", 1)) == 1:
        return model
    scale = float(pre.pop("pixel_scale", 1))
    bgr = pre.pop("channel_order", "RGB") == "BGR"
    stats = dict(pre.get("stats") or {})
    mean = [float(m) / scale for m in stats.get("mean", [0.0] * 3)]
    std = [float(s) / scale for s in (stats.get("std") if pre.get("normalize") == "standardize"
                                      else [1.0] * len(mean))]
    if bgr:
        first = model.features[0]
        first.weight.copy_(first.weight.flip(1))
        mean, std = mean[::-1], std[::-1]
    stats.update(mean=mean, std=std)
    pre.update(normalize="standardize", stats=stats, folded=("BGR, " if bgr else "") + f"pixel_scale {scale:g}")
    model.metadata = {**meta, "preprocessing": pre}
    return model
