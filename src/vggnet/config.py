"""The typed run configuration: one object from YAML + `--set` overrides to every stage.

The ground floor of the package: it imports nothing of vggnet but `errors` and Table 1's
names (`model.architectures`, pure data), so data, eval, train and the CLI all read it.

Every default is visible here, with the reason next to it. `load()` validates and
suggests the nearest valid key for a typo; `dump()` writes the fully resolved config,
which `load()` reads back unchanged. The defaults are the out-of-the-box run (`vggnet train`,
Fashion-MNIST); a preset in configs/ sets every key in which it differs from them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from vggnet.errors import ConfigError
from vggnet.model.architectures import resolve_name


# Names that mean one thing each (model.init: vggnet.model.init; data.normalize: vggnet.data.augment).
INITS = ("std0.1", "std0.01", "glorot", "kaiming")
RETIRED_INITS = {"paper": "init 'paper' was ambiguous and is retired: use std0.1 (the paper's sentence read "
                    "literally, variance 1e-2) or std0.01 (the reading that trains; the paper presets use it)"}

# The input regimes a net can be trained in (data.normalize):
NORMALIZE = {
    "paper": "RGB, pixel values 0-255 minus the training set's mean pixel, nothing else (paper 2.1; Caffe)",
    "caffe": "as paper, in BGR channel order (the paper's Caffe release and Keras' 'caffe' mode)",
    "standardize": "[0, 1] units, minus the mean, divided by the std per channel (small-image nets)",
    "unit-mean": "[0, 1] units minus the mean: the paper's mean subtraction at 1/255 of its scale",
    "none": "[0, 1] units",
}


@dataclass
class ModelConfig:
    name: str = "B"  # Table 1 letter or alias (vgg11, vgg16_bn, ...); B: 94% on Fashion-MNIST in 4.5 CPU-minutes
    batch_norm: bool = True  # seed 001: BN is what makes deep VGGs train reliably
    head: str = "gap"  # "fc" (paper), "conv" (dense evaluation), "gap" (small images)
    init: str = "kaiming"  # "std0.1" (paper, literal) | "std0.01" (paper, as it trains) | "glorot" | "kaiming"
    width: float = 0.25  # channel multiplier; quarter width (16-128 channels) is the fast default (BENCHMARKS.md)
    dropout: float = 0.5  # paper: 0.5 after FC1 and FC2
    pre_initialise: str | None = None  # weights file of a trained A (paper 3.1)
    box_head: str | None = None  # "scr" | "pcr": a localisation net (Appendix A); None = classification


@dataclass
class DataConfig:
    name: str = "fashion-mnist"  # registry name (vggnet.data.sources)
    dir: str | None = None  # where the files are; None searches the usual places
    download: bool = True  # try to download when the files are not found
    val_fraction: float = 0.1  # carved from train (seeded) when a set has no validation split
    subset: int | None = None  # use only this many training images (quick studies)
    image_size: int = 32  # crop fed to the net: 224 for ImageNet, 32 for 28-32 px sets (28 is padded)
    scale: list[int] | None = None  # training scale S: [S] fixed, [Smin, Smax] jittered; None = no rescale
    test_scale: int | None = None  # Q for centre-crop evaluation; None = S (or native size)
    pad: int = 2  # pad-and-random-crop for small images, shifts of +-pad px (0 disables)
    flip: bool = True  # random horizontal flip
    colour_shift: float = 0.0  # AlexNet PCA colour shift alpha std (paper: 0.1)
    erase: float = 0.0  # random erasing probability (not in the paper; the record preset uses it)
    normalize: str = "standardize"  # "paper" (0-255 minus mean pixel) | "caffe" | "standardize" | "unit-mean" | "none"
    workers: int = 2  # DataLoader workers for image folders
    train_per_class: int = 30  # caltech256: training images per class (paper protocol: 30 or 60)
    clutter: bool = False  # caltech256: keep the 257th "clutter" class
    num_classes: int = 10  # synthetic only
    num_train: int = 512  # synthetic and fashion-mnist-loc: training images
    num_test: int = 128  # synthetic and fashion-mnist-loc: test images
    max_pixels: int = 90_000_000  # image files over this many pixels are skipped (decompression bombs)


@dataclass
class TrainConfig:
    epochs: int = 13  # the default run: 13 epochs of B at quarter width fit in 5 minutes on 2 CPU cores
    max_steps: int | None = None  # stop after this many optimizer steps
    batch_size: int = 256
    optimizer: str = "sgd"  # "sgd" (paper) | "adam" (seed 002)
    lr: float = 0.2  # peak of the one-cycle schedule (BN nets take it)
    momentum: float = 0.9  # paper
    weight_decay: float = 5e-4  # paper
    nesterov: bool = True
    schedule: str = "onecycle"  # "plateau" (paper) | "step" | "cosine" | "onecycle" | "constant"
    warmup_epochs: float = 2.0  # onecycle/cosine warm-up
    plateau_patience: int = 2  # epochs without val improvement before lr /= 10 (paper rule)
    plateau_max_decreases: int = 3  # paper: 3 decreases
    step_size: int = 30  # "step": epochs between /10
    label_smoothing: float = 0.1  # +~0.2% on Fashion-MNIST; the paper used none
    grad_clip: float | None = None  # max global grad norm
    early_stop_patience: int | None = None  # seed 001 used 10
    amp: bool = True  # bf16 autocast (CPU and GPU)
    channels_last: bool = True
    compile: bool = False  # torch.compile the model
    checkpoint_activations: bool = False  # recompute each conv block in backward: less memory, ~1/3 more time
    checkpoint_minutes: float = 5.0  # also save last.pt this often within an epoch
    on_nonfinite: str = "rollback"  # "rollback" (restore last good state, lr /= 10) | "stop"
    health_every: int = 100  # steps between training-health samples (0 disables)
    force: bool = False  # train even when the pre-training diagnosis says "will not train"
    progress: bool = True  # progress bar


@dataclass
class EvalConfig:
    protocols: list[str] = field(default_factory=lambda: ["centre", "dense"])
    scales: list[int] | None = None  # Q values for multi-scale / multi-crop
    limit: int | None = None  # score only the first N test images (quick studies)
    batch_size: int = 256


@dataclass
class LocConfig:
    """Localisation (Appendix A); used when model.box_head is set."""

    classifier: str | None = None  # weights of the classification net: initialises the box net, ranks its boxes
    finetune: str = "all"  # "all" layers (paper) | "fc" layers only (Table 8's other row)
    merge_iou: float = 0.5  # greedy merge (OverFeat): boxes overlapping more than this are averaged
    samples: int = 16  # test images drawn with their boxes in the report


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loc: LocConfig = field(default_factory=LocConfig)
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    deterministic: bool = False  # bit-exact reruns on CPU (slower kernels on GPU)
    name: str | None = None  # run name; default derived from config
    init_from: str | None = None  # start from these weights (e.g. S=384 from S=256)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    """Coerce YAML scalars to the declared type, or raise ConfigError naming the key, the value
    and what is allowed (`allowed`)."""
    text = str(hint)

    def refuse() -> ConfigError:
        return ConfigError(f"{key} must be {allowed(key, hint)}, got {value!r}")

    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{key} may not be null; give {allowed(key, hint)}")
    if "list" in text:
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = int if "list[int]" in text else str
        if any(isinstance(v, (list, tuple, dict, bool)) or v is None for v in value) or (
                inner is int and not all(isinstance(v, int) or (isinstance(v, float) and v.is_integer())
                                         or isinstance(v, str) for v in value)):
            raise refuse()
        try:
            return [inner(v) for v in value]
        except (TypeError, ValueError, OverflowError):
            raise refuse() from None
    for typ in (bool, int, float, str):
        if text.startswith(typ.__name__) or text == f"<class '{typ.__name__}'>":
            if typ is bool and not isinstance(value, bool):
                if str(value).lower() in ("true", "1", "yes"):
                    return True
                if str(value).lower() in ("false", "0", "no"):
                    return False
                raise refuse()
            if typ in (int, float) and isinstance(value, bool):
                raise refuse()
            if isinstance(value, (list, tuple, dict)):
                raise refuse()
            try:
                out = typ(value)
            except (TypeError, ValueError, OverflowError):
                raise refuse() from None
            if typ is float and not math.isfinite(out):
                raise refuse()
            if typ is int and isinstance(value, float) and value != int(value):
                raise refuse()
            return out
    return value


def _merge(obj: Any, updates: dict[str, Any], prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for key, value in updates.items():
        full = f"{prefix}{key}"
        if key not in names:
            valid = [f"{prefix}{n}" for n in names]
            near = difflib.get_close_matches(full, valid, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; valid keys: {', '.join(valid)}"
            raise ConfigError(f"unknown config key '{full}'{hint}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' is a section; give it keys, e.g. {full}.{fields(current)[0].name}=...")
            _merge(current, value, prefix=f"{full}.")
        else:
            setattr(obj, key, _check_type(value, hints[key], full))


def parse_override(text: str) -> dict[str, Any]:
    """`a.b=c` -> {"a": {"b": c}} with c parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. train.lr=0.05), got '{text}'")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}={raw}: the value is not valid YAML ({str(exc).splitlines()[0]}); quote "
                          f"text, e.g. --set {key}='\"{raw}\"'") from None
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


# ---- what each key allows: one entry per key (a test checks that every key has one) ----
# (kind, argument): "choice" -> the allowed values; "range" -> (low, high[, low_open[, high_open]]);
# "names" -> resolved by a function; "text"/"path" -> non-empty; "plain" -> one path component (a run
# name under runs/); "device" -> DEVICE; "any" -> the
# type check alone is enough. Lists are checked item by item; None is allowed where the type says.
INF = float("inf")
CHECKS: dict[str, tuple[str, Any]] = {
    "model.name": ("names", resolve_name),
    "model.batch_norm": ("any", None),
    "model.head": ("choice", ("fc", "conv", "gap")),
    "model.init": ("choice", INITS),
    "model.width": ("range", (0, INF, True)),
    "model.dropout": ("range", (0, 1, False, True)),
    "model.pre_initialise": ("path", None),
    "model.box_head": ("choice", ("scr", "pcr")),
    "data.name": ("text", None),
    "data.dir": ("path", None),
    "data.download": ("any", None),
    "data.val_fraction": ("range", (0, 1, False, True)),
    "data.subset": ("range", (1, INF)),
    "data.image_size": ("range", (1, 4096)),
    "data.scale": ("range", (1, 8192)),
    "data.test_scale": ("range", (1, 8192)),
    "data.pad": ("range", (0, 1024)),
    "data.flip": ("any", None),
    "data.colour_shift": ("range", (0, 10)),
    "data.erase": ("range", (0, 1)),
    "data.normalize": ("choice", tuple(NORMALIZE)),
    "data.workers": ("range", (0, 256)),
    "data.train_per_class": ("range", (1, INF)),
    "data.clutter": ("any", None),
    "data.num_classes": ("range", (2, 100_000)),
    "data.num_train": ("range", (1, 10**8)),
    "data.num_test": ("range", (1, 10**8)),
    "data.max_pixels": ("range", (1, 2**40)),
    "train.epochs": ("range", (1, 100_000)),
    "train.max_steps": ("range", (1, 2**62)),
    "train.batch_size": ("range", (1, 2**20)),
    "train.optimizer": ("choice", ("sgd", "adam")),
    "train.lr": ("range", (0, INF, True)),
    "train.momentum": ("range", (0, 1, False, True)),
    "train.weight_decay": ("range", (0, 1)),
    "train.nesterov": ("any", None),
    "train.schedule": ("choice", ("plateau", "step", "cosine", "onecycle", "constant")),
    "train.warmup_epochs": ("range", (0, 100_000)),
    "train.plateau_patience": ("range", (1, 100_000)),
    "train.plateau_max_decreases": ("range", (0, 100)),
    "train.step_size": ("range", (1, 100_000)),
    "train.label_smoothing": ("range", (0, 1, False, True)),
    "train.grad_clip": ("range", (0, INF, True)),
    "train.early_stop_patience": ("range", (1, 100_000)),
    "train.amp": ("any", None),
    "train.channels_last": ("any", None),
    "train.compile": ("any", None),
    "train.checkpoint_minutes": ("range", (0, 10**6)),
    "train.on_nonfinite": ("choice", ("rollback", "stop")),
    "train.health_every": ("range", (0, 10**9)),
    "train.progress": ("any", None),
    "train.force": ("any", None),
    "train.checkpoint_activations": ("any", None),
    "eval.protocols": ("choice", ("centre", "dense", "multi_scale", "multi_crop", "fusion")),
    "eval.scales": ("range", (1, 8192)),
    "eval.limit": ("range", (1, INF)),
    "eval.batch_size": ("range", (1, 2**20)),
    "loc.classifier": ("path", None),
    "loc.finetune": ("choice", ("all", "fc")),
    "loc.merge_iou": ("range", (0, 1, True, True)),
    "loc.samples": ("range", (0, 10_000)),
    "seed": ("range", (0, 2**63, False, True)),
    "device": ("device", None),
    "deterministic": ("any", None),
    "name": ("plain", None),
    "init_from": ("path", None),
}
DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _range_text(arg: tuple) -> str:
    low, high, low_open, high_open = (*arg, False, False)[:4]
    text = f"more than {low}" if low_open else f"at least {low}"
    if high != INF:
        text += f" and {'less than' if high_open else 'at most'} {high}"
    return text


def allowed(key: str, hint: Any = None) -> str:
    """What ``key`` allows, in words: "a whole number at least 1 and at most 100000", "one of sgd, adam"."""
    kind, arg = CHECKS.get(key, ("any", None))
    hint = str(hint if hint is not None else get_type_hints(RunConfig).get(key, ""))
    if hint == "":  # a section's key: its type from the section's dataclass
        section, _, leaf = key.rpartition(".")
        hint = str(get_type_hints(type(getattr(RunConfig(), section))).get(leaf, "")) if section else ""
    many = "list" in hint
    what = ("a list of whole numbers" if "list[int]" in hint else "a list of names") if many else (
        "a whole number" if hint.startswith("int") or "'int'" in hint else
        "a finite number" if hint.startswith("float") or "'float'" in hint else
        "true or false" if hint.startswith("bool") or "'bool'" in hint else "a name")
    if kind == "range":
        what += f" ({'each ' if many else ''}{_range_text(arg)})"
    elif kind == "choice":
        what = f"a list of: {', '.join(arg)}" if many else f"one of {', '.join(arg)}"
    elif kind == "path":
        what = "a non-empty path"
    elif kind == "device":
        what = "one of auto, cpu, cuda, cuda:N, mps"
    elif kind == "plain":
        what = "a plain name (no / or \\, not . or ..)"
    return what + (" or null" if "None" in hint else "")


def _check_key(key: str, value: Any) -> None:
    """Raise a ConfigError naming ``key``, ``value`` and what is allowed, if CHECKS refuses it."""
    kind, arg = CHECKS[key]
    if value is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if kind == "choice" and item not in arg:
            raise ConfigError(f"{key}={item!r} is not one of {', '.join(arg)}")
        if kind == "names":
            arg(item)  # its error names the kind of name ("unknown VGG config 'F'; valid: ...")
        if kind in ("text", "path") and (not item.strip() or "\0" in item):
            raise ConfigError(f"{key}={item!r} must be a non-empty {'path' if kind == 'path' else 'name'}")
        if kind == "device" and not DEVICE.match(item):
            raise ConfigError(f"device={item!r} is not one of auto, cpu, cuda, cuda:N, mps")
        if kind == "plain" and (not item.strip() or "/" in item or "\\" in item or item in (".", "..")
                                or "\0" in item):
            raise ConfigError(f"{key}={item!r} must be a plain name (no / or \\, not . or ..): it names the run "
                              "directory under runs/; use --out for another place")
        if kind == "range":
            low, high, low_open, high_open = (*arg, False, False)[:4]
            if item < low or item > high or (low_open and item == low) or (high_open and item == high):
                raise ConfigError(f"{key} must be {_range_text(arg)}, got {item!r}")


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of the config as {"section.key": value}."""
    out: dict[str, Any] = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """The config as {"train.lr": 0.1, ...}: the keys CHECKS and the run fingerprint speak of."""
    return _flat(cfg)


def validate(cfg: RunConfig) -> RunConfig:
    """Check every key against CHECKS, then the rules that join two keys."""
    if cfg.model.init in RETIRED_INITS:
        raise ConfigError(f"model.{RETIRED_INITS[cfg.model.init]}")
    for key, value in flatten(cfg).items():
        _check_key(key, value)
    if cfg.data.scale is not None and len(cfg.data.scale) not in (1, 2):
        raise ConfigError(f"data.scale must be [S] or [Smin, Smax], got {cfg.data.scale}")
    if cfg.data.scale and min(cfg.data.scale) < cfg.data.image_size:
        raise ConfigError(f"data.scale {cfg.data.scale} is smaller than the crop data.image_size={cfg.data.image_size}")
    if not cfg.eval.protocols:
        raise ConfigError("eval.protocols is empty; name at least one, e.g. [centre]")
    return cfg


def from_dict(data: dict[str, Any] | None) -> RunConfig:
    cfg = RunConfig()
    _merge(cfg, data or {})
    return validate(cfg)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error (not "last wins")."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (list, dict)):
                raise yaml.constructor.ConstructorError(None, None, "a key may not be a list or a mapping",
                                                        key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r} (line "
                                                        f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, what: str, where: str, shape: str) -> dict[str, Any]:
    """A YAML mapping from ``path``, or a ConfigError saying what is wrong with the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a YAML file ({where})")
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found; {where}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a UTF-8 text file (byte {exc.start}); give a YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be {shape}")
    return data


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a YAML recipe (or the defaults), apply `key=value` overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_yaml(path, "config file", "configs/ has presets",
                         "a YAML mapping of sections (model:, data:, train:, ...)")
    cfg = RunConfig()
    _merge(cfg, data)
    for text in overrides:
        _merge(cfg, parse_override(text))
    return validate(cfg)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
