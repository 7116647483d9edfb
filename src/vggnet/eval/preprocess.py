"""Test-time preprocessing: the training run's data settings and statistics, applied to raw images.

The geometry matches the evaluation loader (`vggnet.data.loaders`): uint8 images are centre-padded
when small (Fashion-MNIST 28 -> 32), rescaled so the shorter side is Q, cropped; then converted to
the model's channels and normalised with the training statistics.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from vggnet.data import augment as A
from vggnet.data.loaders import eval_scale
from vggnet.config import DataConfig, RunConfig
from vggnet.errors import ConfigError, WeightsError
from vggnet.weights.preprocess import regime


@dataclass
class Preprocessing:
    """Everything needed to turn raw uint8 images into net input for one model."""

    data: DataConfig  # image_size (crop), scale (training S), test_scale (Q), pad, normalize
    stats: A.Stats
    channels: int  # the model's input channels

    @classmethod
    def from_config(cls, cfg: RunConfig | DataConfig, stats: A.Stats, channels: int) -> Preprocessing:
        data = cfg.data if isinstance(cfg, RunConfig) else cfg
        return cls(dataclasses.replace(data), stats, channels)

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], source: str = "the weights") -> Preprocessing:
        """From a weights file's metadata ({"model": ..., "preprocessing": {...}})."""
        pre = meta.get("preprocessing")
        if not pre or "stats" not in pre:
            raise WeightsError(f"{source} carry no preprocessing metadata (stats, image size); use the model.safetensors "
                               "a training run wrote, or save_weights(..., preprocessing={...})")
        data = DataConfig(name=pre.get("dataset", "imagefolder"), image_size=int(pre.get("image_size", 224)),
                          scale=pre.get("scale"), test_scale=pre.get("test_scale"),
                          normalize=regime({"normalize": "standardize", **pre}))
        data.pad = int(pre.get("pad", 4))  # files that do not record it were trained with the then default, 4
        channels = int(meta.get("model", {}).get("in_channels", pre.get("channels", 3)))
        return cls(data, A.Stats.from_dict(pre["stats"]), channels)

    @property
    def crop(self) -> int:
        """The net's input crop (data.image_size): 224 for ImageNet-style runs, 32 for small images."""
        return self.data.image_size

    @property
    def test_scale(self) -> int:
        """Single-scale Q: data.test_scale, else S, else (Smin + Smax) / 2, else the crop size."""
        return eval_scale(self.data) or self.crop

    def default_scales(self, min_input: int) -> list[int]:
        """The paper's multi-scale Q set: {S-32, S, S+32} for fixed S, {Smin, (Smin+Smax)/2, Smax} for
        jittered S. Without S (small images) the step is crop/8 (4 px at 32) around the crop size,
        shifted up so the smallest Q is still a valid input: {32, 36, 40} for a 32 px net."""
        scale = self.data.scale
        if scale and min(scale) != max(scale):
            lo, hi = min(scale), max(scale)
            return [lo, (lo + hi) // 2, hi]
        centre = scale[0] if scale else self.crop
        step = 32 if scale else max(1, self.crop // 8)
        out = [centre - step, centre, centre + step]
        floor = max(self.crop, min_input)
        return [q + max(0, floor - out[0]) for q in out]

    def check_scales(self, scales: list[int]) -> list[int]:
        bad = [q for q in scales if q < self.crop]
        if not scales or bad:
            raise ConfigError(f"test scales Q={scales} must be at least the crop size {self.crop} "
                              f"(data.image_size); give --scales of {self.crop} or more")
        return [int(q) for q in scales]

    def pads_small(self, images: torch.Tensor) -> bool:
        """Training padded and shifted these images (no scale S, images no larger than the crop)."""
        return not self.data.scale and max(images.shape[-2:]) <= self.crop

    def at_scale(self, images: torch.Tensor, q: int) -> torch.Tensor:
        """uint8 [N,C,H,W] -> uint8 with shorter side q (small images centre-padded to the crop first)."""
        if self.pads_small(images):
            images = A.centre_pad(images, self.crop)
        return A.rescale(images, q)

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 net input: the model's channels, normalised with the training stats."""
        return A.normalize(A.convert_channels(images, self.channels), self.stats, self.data.normalize)
