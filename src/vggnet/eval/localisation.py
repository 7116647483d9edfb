"""Localisation (paper Appendix A): box merging and the localisation error.

- Boxes travel as (x1, y1, x2, y2); the net predicts (centre x, centre y, width, height) as
  fractions of its input (`to_corners` / `to_centre` convert).
- `greedy_merge`: OverFeat's (Sermanet et al. 2014) greedy merge: repeatedly merge the two
  closest boxes (match score 1 - IoU) into one whose coordinates are the average of all the
  boxes it holds, while the best match is closer than ``1 - iou``; a merged box is rated by
  the sum of its members' class scores.
- `localisation_error`: the ILSVRC measure the paper reports. A prediction (class, box) is
  correct when the class is the ground truth's and the box overlaps one of that class's
  ground-truth boxes with IoU above 0.5; the top-k error counts the images none of whose
  first k predictions is correct. With the ground-truth class as the only prediction it is
  the paper's "localisation only" protocol (Table 8).
- Trivial baselines: the whole-image box and the centre box of the training boxes' mean size.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from torchvision.ops import box_iou

from vggnet.model.architectures import HEAD_INPUT

IOU_CORRECT = 0.5  # ILSVRC: IoU above 0.5 with a ground-truth box


def to_corners(centre: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """(cx, cy, w, h) as fractions of the image -> (x1, y1, x2, y2) in pixels; [..., 4]. A
    negative width or height (an untrained net) counts as 0."""
    cx, cy, w, h = centre.unbind(-1)
    w, h = w.clamp(min=0), h.clamp(min=0)
    return torch.stack([(cx - w / 2) * width, (cy - h / 2) * height,
                        (cx + w / 2) * width, (cy + h / 2) * height], -1)


def to_centre(corners: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """(x1, y1, x2, y2) in pixels -> (cx, cy, w, h) as fractions of the image; [..., 4]."""
    x1, y1, x2, y2 = corners.unbind(-1)
    return torch.stack([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height], -1)


def greedy_merge(boxes: torch.Tensor, scores: torch.Tensor, *, iou: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge boxes [M, 4] (corners) with scores [M] greedily (OverFeat); the merged boxes and
    their ratings (summed scores), best first."""
    sums = boxes.double().clone()  # coordinate sums: a merged box is the mean of its members
    counts = torch.ones(len(boxes), dtype=torch.float64)
    rating = scores.double().clone()
    alive = list(range(len(boxes)))
    while len(alive) > 1:
        current = sums[alive] / counts[alive, None]
        overlap = box_iou(current, current)
        overlap.fill_diagonal_(-1.0)
        best = int(overlap.argmax())
        i, j = divmod(best, len(alive))
        if float(overlap[i, j]) < iou:  # the best match score (1 - IoU) is above 1 - iou: done
            break
        a, b = alive[i], alive[j]
        sums[a] += sums[b]
        counts[a] += counts[b]
        rating[a] += rating[b]
        alive.remove(b)
    merged = (sums[alive] / counts[alive, None]).to(boxes.dtype)
    order = torch.argsort(rating[alive], descending=True)
    return merged[order], rating[alive][order].to(scores.dtype)


def correct(pred_classes: torch.Tensor, pred_boxes: torch.Tensor, gt_classes: torch.Tensor,
            gt_boxes: torch.Tensor) -> torch.Tensor:
    """For one image: which of its k predictions (classes [k], boxes [k, 4]) hit a ground-truth
    object (classes [m], boxes [m, 4]) of the same class with IoU > 0.5; bool [k]."""
    if len(gt_boxes) == 0 or len(pred_boxes) == 0:
        return torch.zeros(len(pred_boxes), dtype=torch.bool)
    same = pred_classes[:, None] == gt_classes[None, :]
    return ((box_iou(pred_boxes.float(), gt_boxes.float()) > IOU_CORRECT) & same).any(1)


def localisation_error(pred_classes: list[torch.Tensor], pred_boxes: list[torch.Tensor],
                       gt_classes: list[torch.Tensor], gt_boxes: list[torch.Tensor],
                       ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Top-k localisation errors over images (one list entry per image; predictions ranked
    best first): {"top1_error": ..., "top5_error": ..., "n": images}."""
    n = len(gt_boxes)
    if not n:
        return {"n": 0}
    hits = [correct(pc, pb, gc, gb) for pc, pb, gc, gb in zip(pred_classes, pred_boxes, gt_classes, gt_boxes)]
    out: dict[str, float] = {f"top{k}_error": sum(not bool(h[:k].any()) for h in hits) / n for k in ks}
    out["n"] = n
    return out


def whole_image_boxes(width: float, height: float, n: int) -> torch.Tensor:
    """The trivial baseline: the whole image, [n, 4]."""
    return torch.tensor([0.0, 0.0, width, height]).expand(n, 4).clone()


def centre_boxes(train_boxes: torch.Tensor, width: float, height: float, n: int) -> torch.Tensor:
    """The other trivial baseline: a box of the training boxes' mean size at the image centre."""
    w, h = (train_boxes[:, 2] - train_boxes[:, 0]).mean(), (train_boxes[:, 3] - train_boxes[:, 1]).mean()
    box = torch.stack([(width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2])
    return box.expand(n, 4).clone()


def ground_truth(split) -> tuple[list[torch.Tensor], list[torch.Tensor], list[int]]:  # noqa: ANN001 - sources.Split
    """Per image: its classes [m], boxes [m, 4], and the split's first entry of it. In-memory sets
    have one box per image; file sets list an image once per box, grouped back here by path."""
    if split.paths is None:
        return [split.labels[i:i + 1] for i in range(len(split))], [split.boxes[i:i + 1] for i in range(len(split))], \
            list(range(len(split)))
    groups: dict = {}
    for i, path in enumerate(split.paths):
        groups.setdefault(path, []).append(i)
    firsts = [rows[0] for rows in groups.values()]
    return ([split.labels[rows] for rows in groups.values()], [split.boxes[rows] for rows in groups.values()], firsts)


@torch.no_grad()
def box_candidates(model, images: torch.Tensor, *, scales: list[int] | None = None,  # noqa: ANN001 - a VGG
                   flip: bool = True) -> torch.Tensor:
    """The box net's predictions over scales Q, flips and (conv head) positions: [N, V, k, 4]
    as (cx, cy, w, h) fractions of the image. The ``conv`` head is applied densely (paper A):
    each position of its output map is a 224 window at a stride of 32 px, its box in window
    coordinates mapped to the image; other heads give one box per scale and flip."""
    h, w = images.shape[-2:]
    out = []
    for q in scales or [min(h, w)]:
        r = q / min(h, w)
        x = images if q == min(h, w) else F.interpolate(images, size=(round(h * r), round(w * r)), mode="bilinear",
                                                        align_corners=False, antialias=True)
        for mirrored in ((False, True) if flip else (False,)):
            view = x.flip(-1) if mirrored else x
            if model.head == "conv":
                boxes = model.boxes(model.score_map(model.forward_features(view)))  # [N, k, gh, gw, 4]
                gh, gw = boxes.shape[2:4]
                ys = torch.arange(gh, device=boxes.device, dtype=boxes.dtype)[:, None] * 32
                xs = torch.arange(gw, device=boxes.device, dtype=boxes.dtype)[None, :] * 32
                qh, qw = view.shape[-2:]
                cx = (xs + boxes[..., 0] * HEAD_INPUT) / qw
                cy = (ys + boxes[..., 1] * HEAD_INPUT) / qh
                boxes = torch.stack([cx, cy, boxes[..., 2] * HEAD_INPUT / qw, boxes[..., 3] * HEAD_INPUT / qh], -1)
                boxes = boxes.flatten(2, 3).transpose(1, 2)  # [N, positions, k, 4]
            else:
                boxes = model.boxes(model(view))[:, None]  # [N, 1, k, 4]
            if mirrored:
                boxes = torch.cat([1 - boxes[..., :1], boxes[..., 1:]], -1)
            out.append(boxes.float())
    return torch.cat(out, 1)


def localise(candidates: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor, width: float, height: float,
             *, iou: float = 0.5) -> torch.Tensor:
    """One box per (image, class): candidates [N, V, k, 4] (k = 1: SCR, shared by all classes),
    classes [N, c] to localise, their scores [N, c] rating the merged boxes; -> [N, c, 4] corners,
    clipped to the image."""
    n, c = classes.shape
    out = torch.empty(n, c, 4)
    for i in range(n):
        for j in range(c):
            column = 0 if candidates.shape[2] == 1 else int(classes[i, j])
            boxes = to_corners(candidates[i, :, column].cpu(), width, height)
            merged, _ = greedy_merge(boxes, scores[i, j].cpu().expand(len(boxes)), iou=iou)
            out[i, j] = merged[0]
    return torch.minimum(out.clamp(min=0), torch.tensor([width, height, width, height], dtype=out.dtype))
