"""The paper's test protocols (section 3.2), each a function returning class posteriors [N, K].

- ``centre``: rescale to Q (shorter side), one centre crop of the training crop size.
- ``dense``: the fully-convolutional net over the whole rescaled image; the class score map is
  spatially averaged; softmax averaged with the horizontally flipped image.
- ``multi_scale``: ``dense`` posteriors averaged over several Q.
- ``multi_crop``: per Q a 5x5 regular grid of crops x 2 flips = 50 crops (150 over three Q).
- ``fusion``: the average of ``multi_scale`` (dense) and ``multi_crop`` posteriors (paper Table 5).
- ``ensemble``: the average posteriors of several models (paper Table 6).

Small images (28-32 px, no training scale S): Q is the image size (32), the multi-scale set is
{32, 36, 40}, and multi-crop takes its 5x5 grid from the image zero-padded by data.pad, i.e. the
shifted crops the net was trained on. See docs/evaluation.md.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vggnet.data import augment as A
from vggnet.data.loaders import iter_raw
from vggnet.errors import ConfigError, DataError
from vggnet.eval import metrics
from vggnet.eval.preprocess import Preprocessing
from vggnet.model.architectures import HEAD_INPUT
from vggnet.model.vgg import VGG, convert_head
from vggnet.files import atomic_write
from vggnet.config import RunConfig

PROTOCOLS = ("centre", "dense", "multi_scale", "multi_crop", "fusion")
MULTI_SCALE = ("multi_scale", "multi_crop", "fusion")  # these average over a set of Q
GRID = 5  # paper: a 5x5 grid of crops per scale
Images = torch.Tensor | Sequence[torch.Tensor]  # uint8 [N,C,H,W], or CHW tensors of varying sizes


def check_protocols(names: Iterable[str], num_models: int = 1) -> list[str]:
    """Valid protocol names, in order, duplicates dropped. "ensemble" needs several models."""
    out = []
    for name in names:
        if name == "ensemble":
            if num_models < 2:
                raise ConfigError("the ensemble protocol averages several models: give two or more run directories "
                                  "or weight files (e.g. vggnet eval runs/a runs/b)")
            continue  # with several models every protocol is already an ensemble
        if name not in PROTOCOLS:
            raise ConfigError(f"unknown protocol '{name}'; valid: {', '.join(PROTOCOLS + ('ensemble',))}")
        if name not in out:
            out.append(name)
    return out or ["centre"]


def fully_convolutional(model: VGG) -> VGG:
    """The net for dense evaluation: conv and gap heads as they are; an fc head as a conv-head copy
    (FC1 -> 7x7 conv, FC2/FC3 -> 1x1 convs), the caller's model left untouched."""
    if model.head != "fc":
        return model
    return convert_head(copy.deepcopy(model), "conv")


def _softmax(model: VGG, x: torch.Tensor, batch_size: int, amp: bool | None) -> torch.Tensor:
    """Posteriors float32 [N, K] on the CPU, batched under inference_mode (bf16 on GPUs that have it)."""
    device = next(model.parameters()).device
    if amp is None:
        amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    out = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        for chunk in x.split(batch_size):
            out.append(model(chunk.to(device, non_blocking=True)).float().softmax(1).cpu())
    return torch.cat(out)


def flip_average(model: VGG, x: torch.Tensor, *, batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Softmax of the images and of their horizontal flips, averaged (paper 3.2)."""
    return (_softmax(model, x, batch_size, amp) + _softmax(model, x.flip(-1), batch_size, amp)) / 2


def grid_positions(height: int, width: int, size: int, n: int = GRID) -> list[tuple[int, int]]:
    """(top, left) of an n x n regular grid of size x size crops spanning the image, corners included."""
    if height < size or width < size:
        raise ConfigError(f"a {size}px crop does not fit a {height}x{width} image; use a larger test scale Q")
    tops = torch.linspace(0, height - size, n).round().long().tolist()
    lefts = torch.linspace(0, width - size, n).round().long().tolist()
    return [(t, left) for t in tops for left in lefts]


def centre(model: VGG, images: torch.Tensor, prep: Preprocessing, *, scale: int | None = None,
           batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Single crop: rescale to Q (default the run's test scale), the central crop."""
    q = prep.check_scales([scale or prep.test_scale])[0]
    x = A.centre_crop(prep.at_scale(images, q), prep.crop)
    return _softmax(model, prep.finish(x), batch_size, amp)


def dense(model: VGG, images: torch.Tensor, prep: Preprocessing, *, scale: int | None = None,
          batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Dense evaluation at one Q: the whole rescaled image through the fully-convolutional net,
    class scores spatially averaged, softmax averaged with the flipped image. A gap head is already
    fully convolutional (global average of features); an fc head on images smaller than 224 keeps
    its adaptive 7x7 pooling, which also sees the whole image."""
    q = prep.check_scales([scale or prep.test_scale])[0]
    x = prep.finish(prep.at_scale(images, q))
    net = fully_convolutional(model) if model.head == "fc" and min(x.shape[-2:]) >= HEAD_INPUT else model
    return flip_average(net, x, batch_size=batch_size, amp=amp)


def multi_scale(model: VGG, images: torch.Tensor, prep: Preprocessing, *, scales: Sequence[int] | None = None,
                batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Dense posteriors averaged over Q (default: the paper's set for the run's training S)."""
    scales = prep.check_scales(list(scales or prep.default_scales(model.min_input_size)))
    net = fully_convolutional(model) if model.head == "fc" and min(scales) >= HEAD_INPUT else model
    return sum(dense(net, images, prep, scale=q, batch_size=batch_size, amp=amp) for q in scales) / len(scales)


def multi_crop(model: VGG, images: torch.Tensor, prep: Preprocessing, *, scales: Sequence[int] | None = None,
               grid: int = GRID, batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Per Q, a grid x grid regular grid of crops and their flips (50 for grid 5), posteriors averaged
    over all crops of all scales. Small images are zero-padded by data.pad first (shifted crops)."""
    scales = prep.check_scales(list(scales or prep.default_scales(model.min_input_size)))
    size, n = prep.crop, len(images)
    pad = prep.data.pad if prep.pads_small(images) else 0
    total = None
    for q in scales:
        x = prep.at_scale(images, q)
        x = prep.finish(F.pad(x, (pad,) * 4) if pad else x)
        views = [view for t, left in grid_positions(*x.shape[-2:], size, grid)
                 for crop in (x[..., t : t + size, left : left + size],) for view in (crop, crop.flip(-1))]
        per_group = max(1, batch_size // max(1, n))
        for start in range(0, len(views), per_group):
            probs = _softmax(model, torch.cat(views[start : start + per_group]), batch_size, amp)
            part = probs.view(-1, n, probs.shape[-1]).sum(0)
            total = part if total is None else total + part
    return total / (len(scales) * grid * grid * 2)


def fusion(model: VGG, images: torch.Tensor, prep: Preprocessing, *, scales: Sequence[int] | None = None,
           batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Dense (multi-scale) and multi-crop posteriors averaged: the paper's best single-model result."""
    kw = dict(scales=scales, batch_size=batch_size, amp=amp)
    return (multi_scale(model, images, prep, **kw) + multi_crop(model, images, prep, **kw)) / 2


def run_protocol(name: str, model: VGG, images: Images, prep: Preprocessing, *, scales: Sequence[int] | None = None,
                 batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """Posteriors [N, K] of one protocol by name. ``scales`` feeds the multi-scale protocols; one
    scale is also Q for centre and dense. A list of images of different sizes is run per size."""
    check_protocols([name])
    if not isinstance(images, torch.Tensor):
        return _per_size(name, model, list(images), prep, scales, batch_size, amp)
    kw = dict(batch_size=batch_size, amp=amp)
    if name in MULTI_SCALE:
        return {"multi_scale": multi_scale, "multi_crop": multi_crop, "fusion": fusion}[name](
            model, images, prep, scales=scales, **kw)
    scale = scales[0] if scales and len(scales) == 1 else None
    return (centre if name == "centre" else dense)(model, images, prep, scale=scale, **kw)


def _per_size(name: str, model: VGG, images: list[torch.Tensor], prep: Preprocessing,
              scales: Sequence[int] | None, batch_size: int, amp: bool | None) -> torch.Tensor:
    buckets: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        buckets.setdefault(tuple(image.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(images)
    for index in buckets.values():
        probs = run_protocol(name, model, torch.stack([images[i] for i in index]), prep, scales=scales,
                             batch_size=batch_size, amp=amp)
        for row, i in zip(probs, index):
            out[i] = row
    return torch.stack(out)


def ensemble(members: Sequence[tuple[VGG, Preprocessing]], images: Images, protocol: str = "centre", *,
             scales: Sequence[int] | None = None, batch_size: int = 256, amp: bool | None = None) -> torch.Tensor:
    """The models' posteriors under one protocol, averaged (each model with its own preprocessing)."""
    if not members:
        raise ConfigError("an ensemble needs at least one model")
    classes = {m.config["num_classes"] for m, _ in members}
    if len(classes) > 1:
        raise ConfigError(f"ensemble members predict different numbers of classes ({sorted(classes)}); "
                          "combine models trained on the same dataset")
    return sum(run_protocol(protocol, m, images, p, scales=scales, batch_size=batch_size, amp=amp)
               for m, p in members) / len(members)


def resolve_device(device: str | torch.device) -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def evaluate(model: VGG, ds: Any, cfg: RunConfig, stats: A.Stats, *, split: str = "test",
             protocols: Sequence[str] = ("centre",), scales: Sequence[int] | None = None,
             device: str | torch.device = "cpu", limit: int | None = None) -> dict[str, Any]:
    """Score one model on ds's split under each protocol: the eval.json dict. Q sets default to
    cfg.eval.scales, then the paper's set for cfg.data.scale; per-class figures, the confusion
    matrix and the error analysis come from the first protocol ("analysis_protocol")."""
    prep = Preprocessing.from_config(cfg, stats, model.config["in_channels"])
    return evaluate_models([(model, prep)], ds, split=split, protocols=protocols,
                           scales=scales if scales is not None else cfg.eval.scales, device=device,
                           limit=limit, batch_size=cfg.eval.batch_size)


def _memory_format(model: VGG) -> torch.memory_format:
    """channels_last when any 4-D weight is stored that way (a 1-channel input's filters fit both)."""
    nhwc = any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in model.parameters())
    return torch.channels_last if nhwc else torch.contiguous_format


def evaluate_models(members: Sequence[tuple[VGG, Preprocessing]], ds: Any, *, split: str = "test",
                    protocols: Sequence[str] = ("centre",), scales: Sequence[int] | None = None,
                    device: str | torch.device = "cpu", limit: int | None = None, batch_size: int = 256,
                    amp: bool | None = None) -> dict[str, Any]:
    """:func:`evaluate` for one model or an ensemble (rows then named "ensemble:<protocol>").
    Models are moved to ``device``, set to eval mode and stored channels-last for the call (oneDNN
    and cuDNN convolve that layout fastest: dense 1.5x, multi-crop 1.4x on a CPU), then restored."""
    names = check_protocols(protocols, len(members))
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be train, val or test, got {split!r}")
    if len(getattr(ds, split)) == 0:
        raise DataError(f"{ds.name} has an empty {split} split; evaluate another split (--split)")
    k = len(ds.classes)
    for model, _ in members:
        if model.config["num_classes"] != k:
            raise ConfigError(f"the model predicts {model.config['num_classes']} classes but {ds.name} has {k}; "
                              "evaluate it on the dataset it was trained on")
    device = resolve_device(device)
    saved = [(m, m.training, next(m.parameters()).device, _memory_format(m)) for m, _ in members]
    nets = []
    for model, prep in members:
        model.eval().to(device, memory_format=torch.channels_last)
        pre_convert = model.head == "fc" and prep.crop >= HEAD_INPUT  # one conv copy serves every protocol
        nets.append((fully_convolutional(model) if pre_convert else model, prep))
    rows = {name: (f"ensemble:{name}" if len(members) > 1 else name) for name in names}
    correct = {name: [0, 0] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    predicted, labels_seen = [], []
    n = 0
    try:
        for images, labels in iter_raw(ds, split, batch_size):
            if limit is not None:
                keep = max(0, limit - n)
                images, labels = images[:keep], labels[:keep]
            if len(labels) == 0:
                break
            done: dict[str, tuple[torch.Tensor, float]] = {}  # this batch's posteriors and seconds
            for name in names:
                if name == "fusion" and {"multi_scale", "multi_crop"} <= done.keys():
                    # its two halves were just computed: reuse them, and charge their time
                    (ms, t_ms), (mc, t_mc) = done["multi_scale"], done["multi_crop"]
                    probs, took = (ms + mc) / 2, t_ms + t_mc
                else:
                    start = time.perf_counter()
                    probs = ensemble(nets, images, name, scales=scales, batch_size=batch_size, amp=amp)
                    took = time.perf_counter() - start
                done[name] = (probs, took)
                seconds[name] += took
                correct[name][0] += int(metrics.topk_correct(probs, labels, 1).sum())
                correct[name][1] += int(metrics.topk_correct(probs, labels, 5).sum())
                if name == names[0]:
                    predicted.append(probs.argmax(1))
            labels_seen.append(labels.cpu())
            n += len(labels)
    finally:
        for model, training, old, layout in saved:
            model.train(training).to(old, memory_format=layout)
    if n == 0:
        raise DataError(f"no readable image in the {split} split of {ds.name}")
    probe = members[0][0]
    table = {}
    for name in names:
        used = list(scales) if scales else None
        if name in MULTI_SCALE:
            used = used or members[0][1].default_scales(probe.min_input_size)
        elif not used or len(used) != 1:
            used = [members[0][1].test_scale]
        table[rows[name]] = {"top1_error": 1 - correct[name][0] / n, "top5_error": 1 - correct[name][1] / n, "n": n,
                             "scales": used, "seconds": round(seconds[name], 3)}
    confusion = metrics.confusion_matrix(torch.cat(predicted), torch.cat(labels_seen), k)
    report = metrics.classification_report(confusion)
    return {
        "split": split, "n": n, "protocols": table, "analysis_protocol": rows[names[0]],
        "classes": list(ds.classes), "confusion": confusion.tolist(), "per_class": report,
        "macro_avg": metrics.macro_average(report), "analysis": metrics.error_analysis(confusion, ds.classes),
        "skipped": sorted(str(p) for p in getattr(ds, "skipped", ())),
    }


def write_eval(result: dict[str, Any], path: str | Path) -> Path:
    """Merge the eval.json dict into ``path`` (results.merge: earlier entries are kept, dated) and
    write it atomically (never a half-written file)."""
    from vggnet.eval.results import merge

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give eval.json a file path (--out)")
    old = None
    if path.is_file():
        try:
            old = json.loads(path.read_bytes())
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):  # damaged: kept beside the new one, never silently replaced
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            print(f"note: {path} was damaged (not a JSON object); moved to {aside.name}, writing a new one",
                  file=sys.stderr, flush=True)
            old = None
    text = json.dumps(merge(old, result), indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return Path(path)
