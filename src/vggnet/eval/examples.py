"""The test images a report shows: the most confident mistakes and, per class, the most
confident correct examples, as small uint8 thumbnails in the run's examples.safetensors.

Kept out of eval.json (numbers only) so a report can show a collapse ("everything is one
class") at a glance without the test set. Scored with the centre protocol, the paper's
single-crop figure; one pass over the split, one view per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vggnet.data.loaders import iter_raw
from vggnet.eval.preprocess import Preprocessing
from vggnet.eval.protocols import resolve_device, run_protocol
from vggnet.files import atomic_write
from vggnet.model.vgg import VGG

THUMB = 64  # the largest side stored; Fashion-MNIST and CIFAR images are kept at their own size
MISTAKES = 16
PER_CLASS = 3


def _thumb(image: torch.Tensor) -> torch.Tensor:
    """uint8 CHW, at most THUMB px a side (folder images are resized, not cropped)."""
    if max(image.shape[-2:]) <= THUMB:
        return image
    h, w = image.shape[-2:]
    size = (max(1, round(h * THUMB / max(h, w))), max(1, round(w * THUMB / max(h, w))))
    return F.interpolate(image[None].float(), size=size, mode="area")[0].round().clamp(0, 255).to(torch.uint8)


def _pad(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack thumbnails of different sizes, padded with black to the largest."""
    c = max(i.shape[0] for i in images)
    h = max(i.shape[1] for i in images)
    w = max(i.shape[2] for i in images)
    out = torch.zeros(len(images), c, h, w, dtype=torch.uint8)
    for k, image in enumerate(images):
        out[k, :, : image.shape[1], : image.shape[2]] = image.expand(c, -1, -1)
    return out


@torch.inference_mode()
def collect_examples(model: VGG, ds: Any, prep: Preprocessing, *, split: str = "test", device: str = "cpu",
                     limit: int | None = None, batch_size: int = 256, mistakes: int = MISTAKES,
                     per_class: int = PER_CLASS) -> dict[str, torch.Tensor]:
    """The `mistakes` most confident wrong predictions and the `per_class` most confident right
    ones of each class: {"mistakes"/"correct": uint8 NCHW, "*_true", "*_pred" (int64), "*_prob"
    (the predicted class's posterior)}."""
    device = resolve_device(device)
    training, old = model.training, next(model.parameters()).device
    model.eval().to(device)
    wrong: list[tuple[float, int, int, torch.Tensor]] = []
    right: dict[int, list[tuple[float, int, int, torch.Tensor]]] = {}
    n = 0
    try:
        for images, labels in iter_raw(ds, split, batch_size):
            if limit is not None:
                images, labels = images[: max(0, limit - n)], labels[: max(0, limit - n)]
            if len(labels) == 0:
                break
            probs = run_protocol("centre", model, images, prep, batch_size=batch_size).cpu()
            conf, pred = probs.max(1)
            for i in range(len(labels)):
                item = (float(conf[i]), int(labels[i]), int(pred[i]), images[i])
                if item[2] != item[1]:
                    wrong.append(item)
                else:
                    right.setdefault(item[1], []).append(item)
            wrong = sorted(wrong, key=lambda t: -t[0])[:mistakes]
            right = {k: sorted(v, key=lambda t: -t[0])[:per_class] for k, v in right.items()}
            n += len(labels)
    finally:
        model.train(training).to(old)
    out: dict[str, torch.Tensor] = {}
    chosen = [("mistakes", wrong), ("correct", [t for k in sorted(right) for t in right[k]])]
    for name, items in chosen:
        if not items:
            continue
        out[name] = _pad([_thumb(t[3]) for t in items])
        out[f"{name}_true"] = torch.tensor([t[1] for t in items], dtype=torch.int64)
        out[f"{name}_pred"] = torch.tensor([t[2] for t in items], dtype=torch.int64)
        out[f"{name}_prob"] = torch.tensor([t[0] for t in items], dtype=torch.float32)
    return out


def write_examples(examples: dict[str, torch.Tensor], classes: list[str], path: str | Path) -> Path:
    """Save the examples (and the class names, as metadata) atomically as safetensors."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in examples.items()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata={"classes": json.dumps(classes)}))
    return Path(path)
