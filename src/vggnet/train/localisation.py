"""A localisation net (paper Appendix A): a VGG whose last layer predicts a box; its pieces.

The net is the classification net with the last FC layer replaced by a box regressor
(``model.box_head``: ``scr`` one box, ``pcr`` one per class), initialised from the
classification net (``loc.classifier``: every layer but the last) and trained with the
Euclidean loss on (centre x, centre y, width, height) as fractions of the crop, PCR's loss
on the ground-truth class's box only. ``loc.finetune: fc`` freezes the convs (Table 8).

Per step: the image rescaled to S (``data.scale``; none: as stored), a random crop of
``data.image_size`` with its box moved and clipped, a random flip; each view is drawn with
its own generator of (seed, epoch, image index). Test: eval.localisation's protocols and the
two trivial baselines; eval.json and a grid of test images with their boxes (boxes.png) for
the report. The resumable training loop is train/localisation_run.py.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vggnet.config import RunConfig
from vggnet.data import augment, sources
from vggnet.data.formats import load_image
from vggnet.errors import ConfigError, DataError
from vggnet.eval import localisation as L
from vggnet.model.vgg import VGG
from vggnet.report.localisation import box_grid
from vggnet.weights.native import load_state_dict, load_weights


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
          g: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
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


def view_batch(split: sources.Split, idx: list[int], cfg: RunConfig, epoch: int | None, stats: augment.Stats,
               channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training views of epoch ``epoch`` (each drawn with its own generator of (seed, epoch,
    index)), or the centre views when ``epoch`` is None."""
    def gen(i: int) -> torch.Generator | None:
        return None if epoch is None else torch.Generator().manual_seed(sources.seed_of("loc-view", cfg.seed, epoch, i))

    views = [_view(augment.convert_channels(_image(split, i), channels), split.boxes[i], cfg, epoch is not None, gen(i))
             for i in idx]
    x = augment.normalize(torch.stack([v[0] for v in views]), stats, cfg.data.normalize)
    return x, torch.stack([v[1] for v in views]), split.labels[idx]


def euclidean_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Caffe's EuclideanLoss, which the paper used: sum of squared differences / (2N)."""
    return (pred - target).pow(2).sum() / (2 * len(pred))


def device_of(model: VGG) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def evaluate_localisation(model: VGG, ds: sources.Dataset, cfg: RunConfig, stats: augment.Stats, channels: int,
                          out: Path | None = None) -> dict:
    """The test split's localisation errors: the ground-truth class (Table 8's protocol), the
    classifier's top-5 (when loc.classifier is set), and the whole-image and centre baselines
    (ground-truth class). Each image is tested whole, rescaled to S when data.scale is set, at
    the scales Q of eval.scales (default: as it is) and mirrored."""
    model.eval()
    device = device_of(model)
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
