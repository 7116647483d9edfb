"""Tiny synthetic data, a width-0.125 net, and a run directory written by hand (no trainer needed)."""

import pytest
import torch

from vggnet.data import augment, sources
from vggnet.eval.preprocess import Preprocessing
from vggnet.model.vgg import build_model
from vggnet.weights.native import save_weights
from vggnet import config


def tiny_config(**data):
    return config.from_dict({
        "model": {"name": "A", "width": 0.125, "head": "gap"},
        "data": {"name": "synthetic", "num_classes": 10, "num_train": 64, "num_test": 24, **data},
        "eval": {"batch_size": 64},
    })


@pytest.fixture(scope="session")
def cfg():
    return tiny_config()


@pytest.fixture(scope="session")
def ds(cfg):
    return sources.get(cfg.data, seed=0)


@pytest.fixture(scope="session")
def stats(ds):
    return augment.compute_stats(ds.train)


@pytest.fixture
def model():
    return build_model("A", num_classes=10, width=0.125, head="gap", batch_norm=True, seed=0).eval()


@pytest.fixture
def prep(cfg, stats):
    return Preprocessing.from_config(cfg, stats, 3)


def preprocessing_metadata(cfg, stats, channels=3):
    d = cfg.data
    return {"dataset": d.name, "channels": channels, "image_size": d.image_size, "scale": d.scale,
            "test_scale": d.test_scale, "normalize": d.normalize, "stats": stats.to_dict()}


def write_run(path, cfg, stats, ds, model):
    """A minimal run directory: config.yaml and model.safetensors with the preprocessing metadata."""
    path.mkdir(parents=True, exist_ok=True)
    config.dump(cfg, path / "config.yaml")
    save_weights(model, path / "model.safetensors", classes=ds.classes,
                 preprocessing=preprocessing_metadata(cfg, stats))
    return path


@pytest.fixture
def run_dir(tmp_path, cfg, stats, ds):
    torch.manual_seed(1)
    return write_run(tmp_path / "run", cfg, stats, ds, build_model("A", num_classes=10, width=0.125, head="gap",
                                                                    batch_norm=True, seed=1))
