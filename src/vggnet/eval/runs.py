"""Load what `vggnet eval` / `vggnet predict` are pointed at: a run directory or a weights file.

A run directory holds config.yaml (the resolved RunConfig) and model.safetensors (best weights,
with the preprocessing in its metadata). A weights file alone carries the model config, the class
names and the preprocessing, so it needs no config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vggnet.data.augment import Stats, compute_stats
from vggnet.errors import ConfigError, WeightsError
from vggnet.eval.preprocess import Preprocessing
from vggnet.model.vgg import VGG, build_model
from vggnet.weights.native import load_weights, read_metadata
from vggnet import config
from vggnet.config import RunConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.yaml"


@dataclass
class Loaded:
    """A model ready to evaluate, with its preprocessing and the config that rebuilds its dataset."""

    model: VGG
    prep: Preprocessing
    cfg: RunConfig
    classes: list[str]
    path: Path  # the run directory or the weights file
    weights: Path

    @property
    def run_dir(self) -> Path:
        return self.path if self.path.is_dir() else self.weights.parent


def weights_of(run_dir: Path) -> Path:
    """RUN_DIR -> RUN_DIR/model.safetensors, or an error saying how to get one."""
    weights = run_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise WeightsError(f"{run_dir} has no {WEIGHTS_NAME}; train it first (vggnet train) or pass a weights file")
    return weights


def load(path: str | Path, *, data: str | None = None, data_dir: str | None = None) -> Loaded:
    """Load a run directory (config.yaml + model.safetensors) or a vggnet weights file.

    For a run, the model is built from config.yaml and the weights loaded into it, so weights of
    another config are an error naming both. ``data`` / ``data_dir`` override data.name / data.dir."""
    spec = str(path)
    path = Path(path)
    if path.is_dir():
        weights = weights_of(path)
        meta = read_metadata(weights)
        if not (path / CONFIG_NAME).is_file():
            raise ConfigError(f"{path} has no {CONFIG_NAME}; pass the weights file with --data NAME instead")
        cfg = config.load(path / CONFIG_NAME)
        m = meta["model"]
        expected = build_model(cfg.model.name, num_classes=int(m.get("num_classes", 1000)),
                               batch_norm=cfg.model.batch_norm, head=cfg.model.head,
                               in_channels=int(m.get("in_channels", 3)), width=cfg.model.width,
                               dropout=cfg.model.dropout, init=None)
        model = load_weights(weights, expected)
    else:  # any weights file or torchvision:NAME; Keras BGR / 0-255 input folded into the model
        from vggnet.weights.formats import load_pretrained
        from vggnet.weights.preprocess import canonical

        model = canonical(load_pretrained(spec))
        meta, weights = model.metadata, path
        cfg = RunConfig()
        cfg.data = Preprocessing.from_metadata(meta, spec).data  # raises when it has none
    if data is not None:
        cfg.data.name = data
    if data_dir is not None:
        cfg.data.dir = data_dir
    stats = meta.get("preprocessing", {}).get("stats")
    stats = Stats.from_dict(stats) if stats else _training_stats(cfg)
    prep = Preprocessing.from_config(cfg, stats, model.config["in_channels"])
    k = model.config["num_classes"]
    classes = [str(c) for c in meta.get("classes") or range(k)]
    return Loaded(model, prep, cfg, classes, path, weights)


def _training_stats(cfg: RunConfig) -> Stats:
    """Statistics recomputed from the run's training split (weights saved without them)."""
    from vggnet.data import sources

    return compute_stats(sources.get(cfg.data, seed=cfg.seed).train, seed=cfg.seed)
