"""Training a localisation net (paper Appendix A): a VGG whose last layer predicts a box.

The net is the classification net with the last FC layer replaced by a box regressor
(``model.box_head``: ``scr`` one box, ``pcr`` one per class), initialised from the
classification net (``loc.classifier``: every layer but the last) and trained with the
Euclidean loss on (centre x, centre y, width, height) as fractions of the crop, PCR's loss
on the ground-truth class's box only. ``loc.finetune: fc`` freezes the convs (Table 8).

Per step: the image rescaled to S (``data.scale``; none: as stored), a random crop of
``data.image_size`` with its box moved and clipped, a random flip. Validation each epoch:
the localisation error with the ground-truth class on the val split (what picks the best
weights). Test: eval.localisation's protocols and the two trivial baselines; eval.json and a
grid of test images with their boxes (boxes.png) for the report. A run restarts from
scratch (no mid-run checkpoint: these runs are short) on one device (no DDP).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vggnet.config import RunConfig, dump
from vggnet.data import augment, sources
from vggnet.data.formats import load_image
from vggnet.errors import ConfigError, DataError, TrainingError
from vggnet.eval import localisation as L
from vggnet.eval.protocols import write_eval
from vggnet.model.vgg import VGG
from vggnet.report.localisation import box_grid
from vggnet.train.distributed import resolve_device
from vggnet.train.runtime import make_model, make_optimizer, preprocessing, render_report
from vggnet.train.schedule import PlateauState, lr_at
from vggnet.weights.native import load_state_dict, load_weights, save_weights


def init_from_classifier(model: VGG, path: str | Path) -> VGG:
    """Copy every layer of a classification net but its last into the box net (Appendix A)."""
    state = load_state_dict(path)
    last = f"classifier.{len(model.classifier) - 1}."
    own = model.state_dict()
    keep = {k: v.reshape(own[k].shape) if k in own and v.numel() == own[k].numel() else v  # fc <-> conv head
            for k, v in state.items() if not k.startswith(last)}
    bad = [k for k, v in keep.items() if k not in own or own[k].shape != v.shape]
    if bad or len(keep) != len([k for k in own if not k.startswith(last)]):
        raise ConfigError(f"loc.classifier {path} is not this net's classification form ({(bad or ['layers'])[0]} "
                          "differs); train the classifier with the same model.name, width, head and batch_norm")
    model.load_state_dict({**own, **keep})
    return model


def _view(image: torch.Tensor, box: torch.Tensor, cfg: RunConfig, train: bool,
          g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One training/validation view: rescale to S, crop image_size (random or centre), flip;
    the box (corners, px) follows. -> (uint8 [C, size, size], box as (cx, cy, w, h) fractions)."""
    d, size = cfg.data, cfg.data.image_size
    if d.scale:
        s = d.scale[0] if not train or len(d.scale) == 1 else int(torch.randint(d.scale[0], d.scale[1] + 1, (1,),
                                                                                  generator=g))
        r = s / min(image.shape[-2:])
        image, box = augment.rescale(image[None], s)[0], box * r
    h, w = image.shape[-2:]
    if min(h, w) < size:
        raise DataError(f"an image of {h}x{w} is smaller than data.image_size={size}; set data.scale")
    if train:
        top, left = int(torch.randint(0, h - size + 1, (1,), generator=g)), int(torch.randint(0, w - size + 1, (1,),
                                                                                            generator=g))
    else:
        top, left = (h - size) // 2, (w - size) // 2
    image = image[..., top:top + size, left:left + size]
    box = (box - torch.tensor([left, top, left, top], dtype=box.dtype)).clamp(0, size)
    if train and d.flip and bool(torch.rand(1, generator=g) < 0.5):
        image, box = image.flip(-1), torch.stack([size - box[2], box[1], size - box[0], box[3]])
    return image, L.to_centre(box, size, size)


def _image(split: sources.Split, i: int) -> torch.Tensor:
    return split.images[i] if split.images is not None else load_image(split.paths[i])


def _batch(split: sources.Split, idx: list[int], cfg: RunConfig, train: bool, g: torch.Generator, stats: augment.Stats,
           channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    views = [_view(augment.convert_channels(_image(split, i), channels), split.boxes[i], cfg, train, g) for i in idx]
    x = augment.normalize(torch.stack([v[0] for v in views]), stats, cfg.data.normalize)
    return x, torch.stack([v[1] for v in views]), split.labels[idx]


def euclidean_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Caffe's EuclideanLoss, which the paper used: sum of squared differences / (2N)."""
    return (pred - target).pow(2).sum() / (2 * len(pred))


@torch.no_grad()
def _val_error(model: VGG, split: sources.Split, cfg: RunConfig, stats: augment.Stats, channels: int) -> float:
    """Ground-truth-class localisation error on the centre views of ``split`` (1 box each)."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    wrong, size = 0, cfg.data.image_size
    for start in range(0, len(split), cfg.eval.batch_size):
        idx = list(range(start, min(len(split), start + cfg.eval.batch_size)))
        x, target, labels = _batch(split, idx, cfg, False, g, stats, channels)
        pred = L.to_corners(model.boxes(model(x.to(_device(model))), labels).float().cpu(), size, size)
        gt = L.to_corners(target, size, size)
        wrong += sum(not bool(L.correct(labels[i:i + 1], pred[i:i + 1], labels[i:i + 1], gt[i:i + 1]).any())
                     for i in range(len(idx)))
    model.train()
    return wrong / max(1, len(split))


def _device(model: VGG) -> torch.device:
    return next(model.parameters()).device


def _freeze(model: VGG, finetune: str) -> list[torch.nn.Parameter]:
    if finetune == "fc":
        for p in model.features.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def fit_localisation(cfg: RunConfig, out: Path):  # noqa: ANN201 - trainer.RunResult (avoids a cycle)
    """Train the box net of ``cfg`` into ``out``; test it (eval.json, boxes.png, report.html)."""
    from vggnet.train.trainer import RunResult

    torch.manual_seed(cfg.seed)
    ds = sources.get(cfg.data, seed=cfg.seed)
    if ds.train.boxes is None:
        raise ConfigError(f"data.name={cfg.data.name} has no boxes; localisation needs fashion-mnist-loc, "
                          "ilsvrc-loc or voc-loc")
    channels = ds.channels if ds.in_memory else 3
    stats = augment.compute_stats(ds.train, seed=cfg.seed)
    model = make_model(cfg, len(ds.classes), channels)
    if cfg.loc.classifier:
        init_from_classifier(model, cfg.loc.classifier)
    device = resolve_device(cfg.device)
    model.to(device)
    params = _freeze(model, cfg.loc.finetune)
    t = cfg.train
    opt = make_optimizer(params, t)
    out.mkdir(parents=True, exist_ok=True)
    dump(cfg, out / "config.yaml")
    steps_per_epoch = max(1, len(ds.train) // t.batch_size)
    total = min(t.epochs * steps_per_epoch, t.max_steps or 10**12)
    plateau, step, best, records, wall = PlateauState(), 0, -1.0, [], time.monotonic()
    meta = {"preprocessing": preprocessing(cfg, stats, channels), "classes": ds.classes}
    g = torch.Generator().manual_seed(sources.seed_of("loc-train", cfg.seed))
    model.train()
    for epoch in range(1, t.epochs + 1):
        order = torch.randperm(len(ds.train), generator=g).tolist()
        losses = []
        for b in range(steps_per_epoch):
            if step >= total:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, steps_per_epoch, t, plateau)
            x, target, labels = _batch(ds.train, order[b * t.batch_size:(b + 1) * t.batch_size], cfg, True, g,
                                       stats, channels)
            loss = euclidean_loss(model.boxes(model(x.to(device)), labels), target.to(device))
            if not torch.isfinite(loss):
                raise TrainingError(f"the Euclidean loss is {float(loss)} at step {step}; lower train.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        val = 1.0 - _val_error(model, ds.val, cfg, stats, channels)
        plateau.update(val, t)
        record = {"epoch": epoch, "step": step, "train_loss": sum(losses) / max(1, len(losses)), "val_top1": val,
                  "lr": opt.param_groups[0]["lr"], "wall_s": round(time.monotonic() - wall, 1)}
        records.append(record)
        with (out / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if t.progress:
            print(f"epoch {epoch}/{t.epochs}: loss {record['train_loss']:.4f}, val loc error (GT class) "
                  f"{100 * (1 - val):.1f}%", flush=True)
        if val > best:
            best = val
            save_weights(model, out / "model.safetensors", **meta)
        if step >= total:
            break
    best_model = load_weights(out / "model.safetensors").to(device)
    result = evaluate_localisation(best_model, ds, cfg, stats, channels, out)
    write_eval(result, out / "eval.json")
    render_report(out)
    return RunResult(out, best, test=result, metrics=records)


@torch.no_grad()
def evaluate_localisation(model: VGG, ds: sources.Dataset, cfg: RunConfig, stats: augment.Stats, channels: int,
                          out: Path | None = None) -> dict:
    """The test split's localisation errors: the ground-truth class (Table 8's protocol), the
    classifier's top-5 (when loc.classifier is set), and the whole-image and centre baselines
    (ground-truth class). Each image is tested whole, rescaled to S when data.scale is set, at
    the scales Q of eval.scales (default: as it is) and mirrored."""
    model.eval()
    device = _device(model)
    classifier = load_weights(cfg.loc.classifier).to(device).eval() if cfg.loc.classifier else None
    gt_classes, gt_boxes, firsts = L.ground_truth(ds.test)
    keep = cfg.eval.limit or len(firsts)
    gt_classes, gt_boxes, firsts = gt_classes[:keep], gt_boxes[:keep], firsts[:keep]
    rel_w, rel_h = _mean_relative_size(ds.train)
    preds: dict[str, tuple[list, list]] = {k: ([], []) for k in ("gt_class", "classifier", "whole_image", "centre_box")}
    samples = []
    for n, i in enumerate(firsts):
        image = augment.convert_channels(_image(ds.test, i), channels)
        if cfg.data.scale:
            r = cfg.data.scale[0] / min(image.shape[-2:])
            image, gt_boxes[n] = augment.rescale(image[None], cfg.data.scale[0])[0], gt_boxes[n] * r
        h, w = image.shape[-2:]
        x = augment.normalize(image[None], stats, cfg.data.normalize).to(device)
        candidates = L.box_candidates(model, x, scales=cfg.eval.scales).cpu()
        truth = gt_classes[n][:1]
        box = L.localise(candidates, truth[None], torch.ones(1, 1), w, h, iou=cfg.loc.merge_iou)[0]
        centre = L.centre_boxes(torch.tensor([[0.0, 0.0, rel_w * w, rel_h * h]]), w, h, 1)
        for name, guess in (("gt_class", box), ("whole_image", L.whole_image_boxes(w, h, 1)), ("centre_box", centre)):
            preds[name][0].append(truth)
            preds[name][1].append(guess)
        if classifier is not None:
            probs = torch.softmax(classifier(x), 1).float().cpu()
            scores, top = probs.topk(min(5, probs.shape[1]), 1)
            preds["classifier"][0].append(top[0])
            preds["classifier"][1].append(L.localise(candidates, top, scores, w, h, iou=cfg.loc.merge_iou)[0])
        if len(samples) < cfg.loc.samples:
            samples.append((image, gt_boxes[n], box[0]))
    result = {"task": "localisation", "box_head": model.config["box_head"], "classes": ds.classes, "protocols": {}}
    for name, (classes, boxes) in preds.items():
        if classes:
            result["protocols"][name] = L.localisation_error(classes, boxes, gt_classes, gt_boxes)
    if out is not None and samples:
        (out / "boxes.png").write_bytes(box_grid(samples))
    return result


def _mean_relative_size(split: sources.Split, limit: int = 500) -> tuple[float, float]:
    """Mean box width and height as fractions of their images' (the centre baseline's box)."""
    if split.images is not None:
        h, w = split.images.shape[-2:]
        sizes = torch.tensor([[w, h]] * len(split), dtype=torch.float32)
    else:
        from PIL import Image

        sizes = []
        for path in split.paths[:limit]:
            with Image.open(path) as im:
                sizes.append(im.size)
        sizes = torch.tensor(sizes, dtype=torch.float32)
    boxes = split.boxes[:len(sizes)]
    rel = (boxes[:, 2:] - boxes[:, :2]) / sizes
    return float(rel[:, 0].mean()), float(rel[:, 1].mean())
