"""A-LRN's LRN (AlexNet's: k=2, alpha=1e-4, beta=0.75, n=5) acts only in the paper's input
regime: in [0, 1] units its sum term is ~1e-5 of k and it is a constant rescale by 2^-0.75
(the LRN ablation would measure nothing); in 0-255 minus the mean pixel it depends on the
neighbourhood. Checked on real Fashion-MNIST images through A-LRN's conv1 as the paper
presets initialise it (docs/paper.md, "The input regime")."""

from pathlib import Path

import pytest
import torch

from vggnet.config import DataConfig
from vggnet.data import augment, sources
from vggnet.model.vgg import build_model

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="apt package dataset-fashion-mnist not installed")
def test_lrn_is_active_in_the_paper_regime_and_a_constant_in_unit_range():
    ds = sources.get(DataConfig(name="fashion-mnist", dir=str(REAL_FASHION), val_fraction=0.0), seed=0)
    images = augment.convert_channels(augment.rescale(ds.train.images[:16], 64), 3)
    stats = augment.compute_stats(ds.train, max_images=500)
    model = build_model("A-LRN", num_classes=10, init="std0.01", seed=0)
    conv, relu, lrn = model.features[0], model.features[1], model.features[2]
    rescale = {}
    with torch.no_grad():
        for mode in ("paper", "unit-mean"):
            a = relu(conv(augment.normalize(images, stats, mode)))
            on = a > 1e-6 * a.max()
            rescale[mode] = lrn(a)[on] / a[on]  # what LRN multiplies each active unit by
    constant = 2.0 ** -0.75
    # [0, 1] units: the same factor 2^-0.75 everywhere, to 1e-5
    assert (rescale["unit-mean"] - constant).abs().max() < 1e-5
    # the paper's regime: the factor depends on the neighbourhood, some units damped by >= 2%
    paper = rescale["paper"]
    assert paper.min() < 0.98 * constant and paper.std() > 1e3 * rescale["unit-mean"].std()
