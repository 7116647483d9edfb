"""VGG features as image descriptors (paper Appendix B) and a linear probe on them.

Appendix B: the net (no fine-tuning) is applied densely to the image rescaled to each Q; the
penultimate (4096-D) map is spatially averaged, averaged with the horizontally flipped
image, averaged over the scales, and L2-normalised; a linear SVM is trained on that.
``layer="conv"`` gives the pooled last conv map instead (512-D), and any named layer
(``relu5_3``, ``pool4``, ``fc7``...; ``VGG.named_layers``) its output, spatially averaged. ``stack_scales`` concatenates
the per-scale descriptors instead of averaging them (the paper's choice for Caltech). The
protocols (VOC mAP, Caltech mean class recall, D & E stacking) are in transfer.appendix_b.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from vggnet.data import augment
from vggnet.errors import ConfigError
from vggnet.model.architectures import HEAD_INPUT
from vggnet.model.vgg import VGG, convert_head
from vggnet.transfer.appendix_b import stack
from vggnet.files import atomic_write
from vggnet.weights.preprocess import prepare

LAYERS = ("penultimate", "conv")
PROBES = ("svm", "logreg")


class Describer:
    """Computes Appendix B descriptors for batches of uint8 images with one model."""

    def __init__(self, model: VGG, preprocessing: dict[str, Any], *, layer: str = "penultimate",
                 scales: Sequence[int] | None = None, flip: bool = True, stack_scales: bool = False) -> None:
        if layer not in LAYERS and layer not in model.named_layers():
            raise ConfigError(f"unknown feature layer '{layer}'; valid: {', '.join(LAYERS)} or a layer name: "
                              f"{', '.join(model.named_layers())}")
        if scales and min(scales) < model.min_input_size:
            raise ConfigError(f"scales {list(scales)} go below the model's minimum input {model.min_input_size}")
        self.model = model.eval()
        # Dense evaluation (paper 3.2) needs the conv head; FC1 as a 7x7 conv needs a 224+ image.
        self.dense = model if model.head == "conv" else (
            convert_head(copy.deepcopy(model), "conv").eval() if model.head == "fc" else None)
        self.pre = {"channels": model.config["in_channels"], **(preprocessing or {})}
        self.layer, self.scales, self.flip = layer, list(scales) if scales else None, flip
        self.stack_scales = stack_scales

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer not in LAYERS:
            out = self.model.features_at(x, self.layer)[self.layer]
            return out.mean((2, 3)) if out.ndim == 4 else out
        features = self.model.forward_features(x)
        if self.layer == "conv" or self.model.head == "gap":
            return features.mean((2, 3))
        if self.dense is not None and min(x.shape[-2:]) >= HEAD_INPUT:
            return self.dense.classifier[:-1](features).mean((2, 3))
        return self.model.forward_head(features, pre_logits=True)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] -> L2-normalised descriptors [N, D]."""
        per_scale = []
        for q in self.scales or [None]:
            x = augment.centre_pad(images, self.model.min_input_size) if q is None else augment.rescale(images, q)
            x = prepare(x, self.pre)
            d = self._pooled(x)
            if self.flip:
                d = (d + self._pooled(x.flip(-1))) / 2
            per_scale.append(d)
        if self.stack_scales:
            return stack(*per_scale)
        return torch.nn.functional.normalize(sum(per_scale).float(), dim=1)


def describe(model: VGG, batches: Iterable[tuple[torch.Tensor | list[torch.Tensor], torch.Tensor]],
             preprocessing: dict[str, Any], *, layer: str = "penultimate", scales: Sequence[int] | None = None,
             flip: bool = True, stack_scales: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(descriptors [N, D], labels [N]) for batches as ``loaders.iter_raw`` yields them
    (a stacked uint8 tensor, or a list of images of varying size, and the labels)."""
    describer = Describer(model, preprocessing, layer=layer, scales=scales, flip=flip, stack_scales=stack_scales)
    feats, labels = [], []
    for images, y in batches:
        if isinstance(images, torch.Tensor):
            feats.append(describer(images))
        else:
            feats += [describer(img.unsqueeze(0)) for img in images]
        labels.append(y)
    if not feats:
        raise ConfigError("no images to describe: the split is empty or every file was unreadable")
    return torch.cat(feats), torch.cat(labels)


def save_features(path: str | Path, arrays: dict[str, torch.Tensor], metadata: dict[str, Any]) -> list[Path]:
    """One .safetensors file (arrays + JSON metadata), or for .npy one file per array:
    ``feats.npy`` -> ``feats.train.npy``, ``feats.train_labels.npy``... and ``feats.json``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        tensors = {k: v.contiguous().cpu() for k, v in arrays.items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"vggnet": json.dumps(metadata)}))
        return [path]
    if path.suffix != ".npy":
        raise ConfigError(f"--out must end in .safetensors or .npy, got {path.name}")
    written = []
    for key, value in arrays.items():
        target = path.with_name(f"{path.stem}.{key.replace('.', '_').replace('_features', '')}.npy")
        atomic_write(target, lambda tmp, v=value: np.save(open(tmp, "wb"), v.cpu().numpy()))
        written.append(target)
    meta = path.with_suffix(".json")
    atomic_write(meta, lambda tmp: Path(tmp).write_text(json.dumps(metadata, indent=2)))
    return written + [meta]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 *, kind: str = "svm", C: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Train a linear SVM (Appendix B) or logistic regression on the descriptors; accuracies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    if kind not in PROBES:
        raise ConfigError(f"unknown linear probe '{kind}'; valid: {', '.join(PROBES)}")
    if len(train_x) == 0 or len(test_x) == 0:
        raise ConfigError("the linear probe needs both train and test descriptors")
    clf = LinearSVC(C=C, random_state=seed) if kind == "svm" else LogisticRegression(C=C, max_iter=2000)
    xtr, ytr = train_x.double().numpy(), train_y.numpy()
    clf.fit(xtr, ytr)
    classes = int(max(train_y.max(), test_y.max())) + 1
    return {"probe": kind, "C": C, "train_accuracy": float(clf.score(xtr, ytr)),
            "test_accuracy": float(clf.score(test_x.double().numpy(), test_y.numpy())),
            "n_train": len(train_x), "n_test": len(test_x), "dim": int(train_x.shape[1]),
            "chance": float(np.bincount(test_y.numpy(), minlength=classes).max() / len(test_y))}
