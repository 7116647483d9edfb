"""Top-k, confusion matrix, classification report and error analysis against brute-force references."""

import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from vggnet.errors import ConfigError
from vggnet.eval import metrics


def test_topk_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(200, 12, generator=g)
    labels = torch.randint(0, 12, (200,), generator=g)
    for k in (1, 3, 5):
        wrong = 0
        for s, y in zip(scores.tolist(), labels.tolist()):
            better = sum(1 for v in s if v > s[y])  # classes ranked above the true one
            wrong += better >= k
        assert metrics.topk_error(scores, labels, k) == pytest.approx(wrong / 200)


def test_topk_with_fewer_classes_than_k_counts_everything_correct():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    assert metrics.topk_error(scores, torch.tensor([2, 1]), 5) == 0.0
    assert metrics.topk_error(scores, torch.tensor([2, 1]), 1) == 1.0


def test_topk_of_nothing_is_an_error():
    with pytest.raises(ConfigError):
        metrics.topk_error(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


def test_confusion_and_report_match_sklearn():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 6, (300,), generator=g)
    predicted = torch.where(torch.rand(300, generator=g) < 0.6, labels.clamp(max=4), torch.randint(0, 5, (300,), generator=g))
    cm = metrics.confusion_matrix(predicted, labels, 6)
    for t in range(6):
        for p in range(6):
            assert cm[t, p] == int(((labels == t) & (predicted == p)).sum())
    report = metrics.classification_report(cm)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=range(6), zero_division=0)
    assert report["precision"] == pytest.approx(precision.tolist())
    assert report["recall"] == pytest.approx(recall.tolist())
    assert report["f1"] == pytest.approx(f1.tolist())
    assert report["support"] == support.tolist()
    assert report["precision"][5] == 0.0  # class 5 is never predicted


def test_collapse_warning_when_one_class_takes_most_predictions():
    classes = [f"c{i}" for i in range(10)]
    labels = torch.arange(10).repeat(20)
    predicted = torch.where(torch.arange(200) % 10 < 8, torch.full_like(labels, 3), labels)  # "everything is comet"
    analysis = metrics.error_analysis(metrics.confusion_matrix(predicted, labels, 10), classes)
    assert analysis["max_share_class"] == "c3"
    assert analysis["max_share"] == pytest.approx(0.8)
    assert "c3" in analysis["collapse_warning"] and "80%" in analysis["collapse_warning"]
    assert analysis["prediction_share"][3] == pytest.approx(0.8)
    assert analysis["never_predicted"] == ["c0", "c1", "c2", "c4", "c5", "c6", "c7"]
    assert {p["predicted"] for p in analysis["most_confused_pairs"]} == {"c3"}
    assert analysis["worst_classes"][0]["recall"] == pytest.approx(0.0)


@pytest.mark.parametrize("m", [2, 3])
def test_collapse_warning_when_two_or_three_classes_take_most_predictions(m):
    """'everything is comet or background': no single class passes the one-class threshold (30% of
    10 classes), but m of them together take 90% of the predictions while being m/10 of the images."""
    classes = [f"c{i}" for i in range(10)]
    labels = torch.arange(10).repeat(20)
    i = torch.arange(200)
    predicted = torch.where(i % 10 < 9, (i // 10) % m + 4, labels)  # 90% spread over classes 4..4+m-1
    analysis = metrics.error_analysis(metrics.confusion_matrix(predicted, labels, 10), classes)
    warning = analysis["collapse_warning"]
    assert warning is not None and all(f"'c{4 + j}'" in warning for j in range(m))
    assert f"{m} classes" in warning and "90%" in warning


def test_no_warning_when_the_top_three_are_near_their_share():
    classes = [f"c{i}" for i in range(10)]
    labels = torch.arange(10).repeat(20)
    predicted = labels.clone()
    predicted[:30] = torch.tensor([0, 1, 2] * 10)  # the top three take 42% of the predictions, 30% of the images
    analysis = metrics.error_analysis(metrics.confusion_matrix(predicted, labels, 10), classes)
    assert analysis["collapse_warning"] is None


def test_no_warning_for_an_honest_classifier_and_the_pairs_are_ranked():
    classes = ["a", "b", "c"]
    labels = torch.tensor([0] * 10 + [1] * 10 + [2] * 10)
    predicted = labels.clone()
    predicted[:4] = 1  # a -> b four times
    predicted[10:11] = 2  # b -> c once
    analysis = metrics.error_analysis(metrics.confusion_matrix(predicted, labels, 3), classes)
    assert analysis["collapse_warning"] is None
    assert analysis["most_confused_pairs"][0] == {"true": "a", "predicted": "b", "count": 4, "rate": 0.4}
    assert analysis["most_confused_pairs"][1]["count"] == 1
    assert len(analysis["most_confused_pairs"]) == 2
    assert [c["class"] for c in analysis["worst_classes"]] == ["a", "b", "c"]


def test_a_large_true_class_is_not_a_collapse():
    labels = torch.tensor([0] * 90 + [1] * 5 + [2] * 5)
    analysis = metrics.error_analysis(metrics.confusion_matrix(labels, labels, 3), ["x", "y", "z"])
    assert analysis["max_share"] == pytest.approx(0.9) and analysis["collapse_warning"] is None
