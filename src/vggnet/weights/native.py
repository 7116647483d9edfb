"""Our weights format: safetensors with the model's config (and, from a run, its preprocessing
and class names) in the metadata, so a file alone rebuilds its model. Also the safe reader for
torch tensor files that every other format goes through: nothing is ever unpickled without
``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vggnet.errors import WeightsError
from vggnet.files import atomic_write, short, torch_load_problem
from vggnet.model.vgg import VGG, from_config

META_KEY = "vggnet"


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key};{t.dtype};{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_weights(model: VGG, path: str | Path, **metadata: Any) -> Path:
    """Write ``model`` to a safetensors file with its config (and any JSON-able metadata:
    ``preprocessing``, ``classes``...) so :func:`load_weights` alone can rebuild it, and the
    SHA-256 of its tensors, checked when it is loaded (a flipped bit is an error, not a silently
    different model)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {META_KEY: json.dumps({"model": model.config, **metadata, "sha256": tensors_digest(state)})}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The vggnet metadata of a safetensors file ({} if it has none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        raise WeightsError(f"{path}: its vggnet metadata is not JSON (the file is damaged); "
                           "export the weights again") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model", {}), dict):
        raise WeightsError(f"{path}: its vggnet metadata is not a config object (the file is damaged); "
                           "export the weights again")
    return meta


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, or a torch .pt/.pth file loaded with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes)")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file ({exc})") from None
    try:
        with warnings.catch_warnings():  # torch's own notes on the refusal would come before our line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused or damaged pickle raises many types
        raise WeightsError(f"refused to load {path}: {torch_load_problem(exc)}; if it is a checkpoint you "
                           "trust, convert it to safetensors in a trusted environment") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def load_weights(path: str | Path, model: VGG | None = None, *, strict: bool = True) -> VGG:
    """Load a vggnet safetensors file. Without ``model`` the file's metadata rebuilds it;
    with one, a file of another config is an error naming both."""
    meta = read_metadata(path) if Path(path).suffix == ".safetensors" else {}
    state = load_state_dict(path)
    if meta.get("sha256") and meta["sha256"] != tensors_digest(state):
        raise WeightsError(f"{path} is damaged: its tensors do not match the checksum written with them; "
                           "restore it from a copy (a run's checkpoints/last.pt holds its last epoch)")
    if model is None:
        if "model" not in meta:
            raise WeightsError(f"{path} carries no vggnet config; pass the model to load into, "
                               "or use vggnet.from_torchvision for torchvision files")
        _check_config_holds(meta["model"], state, path)
        model = from_config(meta["model"])
    elif "model" in meta:
        _check_same(meta["model"], model.config, path)
    _load_into(model, state, path, strict=strict)
    model.metadata = meta  # preprocessing and classes travel with the weights
    return model


def _check_config_holds(config: dict, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """The model the file's metadata describes, built on the meta device (nothing allocated), has
    the shapes of the file's tensors: a damaged or crafted config (``width: 2000``) is an error
    here, not an allocation of a terabyte."""
    try:
        with torch.device("meta"):
            shell = from_config(config)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise WeightsError(f"{path}: its metadata is not a model config ({short(str(exc), 100)}); the file is "
                           "damaged, export the weights again") from None
    want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    wrong = next((k for k, v in state.items() if k in want and want[k] != tuple(v.shape)), None)
    if wrong is not None:
        raise WeightsError(f"{path}: its metadata describes another model than its tensors ('{wrong}' is "
                           f"{tuple(state[wrong].shape)}, the config needs {want[wrong]}); the file is damaged, "
                           "export the weights again")


def _check_same(file_cfg: dict, model_cfg: dict, path: str | Path) -> None:
    keys = ("name", "batch_norm", "num_classes", "in_channels", "width")
    diff = [k for k in keys if file_cfg.get(k) != model_cfg.get(k)]
    if diff:
        describe = lambda c: ", ".join(f"{k}={c.get(k)}" for k in keys)  # noqa: E731
        raise WeightsError(f"{path} holds weights for VGG ({describe(file_cfg)}) but the model is "
                           f"VGG ({describe(model_cfg)}); build the matching model or omit it")
    if file_cfg.get("head") != model_cfg.get("head"):
        raise WeightsError(f"{path} has a '{file_cfg.get('head')}' head, the model a '{model_cfg.get('head')}' "
                           "head; load into a matching model, then vggnet.convert_head")


def _load_into(model: VGG, state: dict[str, torch.Tensor], path: Any, *, strict: bool) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            if own[key].numel() == value.numel() and key.startswith("classifier."):
                state[key] = value.reshape(own[key].shape)  # fc <-> conv head
            else:
                raise WeightsError(f"{path}: '{key}' has shape {tuple(value.shape)}, the model expects "
                                   f"{tuple(own[key].shape)}; the file is for another config")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise WeightsError(f"{path} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
