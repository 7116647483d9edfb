"""Appendix A's test side: box conversions, the OverFeat greedy merge, the localisation error
(IoU > 0.5, top-1/top-5), dense box prediction, and the trivial baselines, by hand."""

import pytest
import torch
from torch import nn

import vggnet
from vggnet.eval.localisation import (box_candidates, centre_boxes, correct, greedy_merge, localisation_error,
                                      localise, to_centre, to_corners, whole_image_boxes)


def test_centre_and_corner_forms_round_trip():
    corners = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    centre = to_centre(corners, 100, 80)
    torch.testing.assert_close(centre, torch.tensor([[0.3, 0.375, 0.4, 0.25]]))
    torch.testing.assert_close(to_corners(centre, 100, 80), corners)


def test_greedy_merge_averages_close_boxes_and_rates_them_by_summed_scores():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.0, 1.0, 10.0, 11.0],
                          [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.2, 0.2, 0.2, 0.5])
    merged, rating = greedy_merge(boxes, scores, iou=0.5)
    # the first three overlap (IoU 0.82 pairwise) and become their mean; the far box stays alone
    torch.testing.assert_close(merged, torch.tensor([[1 / 3, 1 / 3, 31 / 3, 31 / 3], [50.0, 50.0, 60.0, 60.0]]))
    torch.testing.assert_close(rating, torch.tensor([0.6, 0.5]))
    alone, _ = greedy_merge(boxes, scores, iou=0.95)  # nothing is that close: no merge
    assert len(alone) == 4


def test_a_prediction_is_correct_with_the_right_class_and_iou_above_half():
    gt_c, gt_b = torch.tensor([3, 5]), torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    pred_b = torch.tensor([[0.0, 0.0, 10.0, 6.0],    # IoU 0.6 with the class-3 box
                           [0.0, 0.0, 10.0, 5.0],    # IoU exactly 0.5: not above, wrong
                           [20.0, 20.0, 30.0, 30.0], # right box, wrong class
                           [21.0, 20.0, 30.0, 30.0]])  # IoU 0.9 with the class-5 box
    hits = correct(torch.tensor([3, 3, 3, 5]), pred_b, gt_c, gt_b)
    assert hits.tolist() == [True, False, False, True]


def test_localisation_error_top1_and_top5_by_hand():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    good, bad = [0.0, 0.0, 10.0, 9.0], [5.0, 5.0, 15.0, 15.0]
    # image 1: right first; image 2: right third; image 3: never right; image 4: right class, bad box
    classes = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([2, 3, 1, 4, 5]), torch.tensor([2, 3, 4, 5, 6]),
               torch.tensor([1, 2, 3, 4, 5])]
    boxes = [torch.tensor([good] * 5), torch.tensor([good] * 5), torch.tensor([good] * 5),
             torch.tensor([bad] * 5)]
    err = localisation_error(classes, boxes, [torch.tensor([1])] * 4, [gt] * 4)
    assert err == {"top1_error": 3 / 4, "top5_error": 2 / 4, "n": 4}


def test_trivial_baselines():
    assert whole_image_boxes(64, 48, 2).tolist() == [[0.0, 0.0, 64.0, 48.0]] * 2
    train = torch.tensor([[0.0, 0.0, 20.0, 10.0], [5.0, 5.0, 35.0, 25.0]])  # mean size 25 x 15
    assert centre_boxes(train, 64, 48, 1).tolist() == [[19.5, 16.5, 44.5, 31.5]]


class ConstantBox(nn.Module):
    """A stand-in box net: every input gets the same box (cx, cy, w, h)."""

    head = "fc"

    def __init__(self, box):
        super().__init__()
        self.box = torch.tensor(box)

    def forward(self, x):
        return self.box.expand(len(x), 4)

    def boxes(self, out, classes=None):
        return out.unflatten(1, (-1, 4))


def test_candidates_cover_scales_and_mirror_the_flipped_boxes_back():
    cand = box_candidates(ConstantBox([0.25, 0.5, 0.5, 0.5]), torch.zeros(2, 1, 32, 32), scales=[32, 40])
    assert cand.shape == (2, 4, 1, 4)  # two scales x (image, mirror)
    assert cand[0, :, 0, 0].tolist() == [0.25, 0.75, 0.25, 0.75]  # the mirror's cx mapped back: 1 - 0.25
    centred = box_candidates(ConstantBox([0.5, 0.5, 0.5, 0.25]), torch.zeros(2, 1, 32, 32), scales=[32, 40])
    box = localise(centred, torch.tensor([[0], [0]]), torch.ones(2, 1), 32, 32)  # all four merge into one
    assert box.tolist() == [[[8.0, 12.0, 24.0, 20.0]]] * 2


def test_dense_box_prediction_maps_windows_to_the_image():
    model = vggnet.build_model("A", num_classes=3, head="conv", width=0.0625, box_head="pcr").eval()
    with torch.no_grad():
        cand = box_candidates(model, torch.randn(1, 3, 256, 288), flip=False)
        feats = model.forward_features(torch.randn(1, 3, 256, 288))
    assert feats.shape[-2:] == (8, 9) and cand.shape == (1, 2 * 3, 3, 4)  # 2x3 windows of 224, stride 32
    # a window's box of (0.5, 0.5, 1, 1) is that window: check the mapping with a fixed last layer
    last = model.classifier[6]
    nn.init.zeros_(last.weight)
    last.bias.data = torch.tensor([0.5, 0.5, 1.0, 1.0]).repeat(3)
    with torch.no_grad():
        cand = box_candidates(model, torch.randn(1, 3, 256, 288), flip=False)
    corners = to_corners(cand[0, :, 0], 288, 256)
    assert corners[0].tolist() == pytest.approx([0, 0, 224, 224], abs=1e-3)
    assert corners[-1].tolist() == pytest.approx([64, 32, 288, 256], abs=1e-3)  # window (1, 2): +64 x, +32 y
