"""torchvision's VGG state dicts (vgg11..vgg19[_bn]) in and out, and its published ImageNet
weights (downloaded into the torch hub cache, hash-checked)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch

from vggnet.errors import WeightsError
from vggnet.model.vgg import VGG, convert_head
from vggnet.weights.layout import check_holds
from vggnet.weights.native import _load_into, load_state_dict
from vggnet.weights.preprocess import imagenet_metadata

NAMES = tuple(f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn"))

TORCHVISION_CONVS = {8: "A", 10: "B", 13: "D", 16: "E"}


def from_torchvision(state_dict: dict[str, torch.Tensor], *, head: str = "fc") -> VGG:
    """Build the VGG matching a torchvision ``vgg11..vgg19[_bn]`` state dict and load it."""
    conv_keys = [k for k, v in state_dict.items() if k.startswith("features.") and k.endswith(".weight")
                 and v.ndim == 4]
    letter = TORCHVISION_CONVS.get(len(conv_keys))
    if letter is None or "classifier.6.weight" not in state_dict:
        raise WeightsError("not a torchvision VGG state dict: expected 8, 10, 13 or 16 convs under "
                           "'features.N' and 'classifier.6'")
    batch_norm = any(k.endswith("running_mean") for k in state_dict)
    first = state_dict["features.0.weight"]
    model = VGG(letter, num_classes=state_dict["classifier.6.weight"].shape[0], batch_norm=batch_norm,
                head="fc", in_channels=first.shape[1], width=first.shape[0] / 64)
    _load_into(model, dict(state_dict), "torchvision state dict", strict=True)
    return convert_head(model, head) if head != "fc" else model


def to_torchvision(model: VGG, fmt: str = "torchvision") -> dict[str, torch.Tensor]:
    """A state dict that torchvision's matching ``vggNN[_bn]`` loads (fc head layout)."""
    check_holds(fmt, model)
    fc_shapes = {0: (model.hidden, -1), 3: (model.hidden, model.hidden), 6: (model.config["num_classes"], -1)}
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("classifier.") and key.endswith(".weight"):
            value = value.reshape(fc_shapes[int(key.split(".")[1])])
        out[key] = value.detach().clone()
    return out


def published(name: str) -> VGG:
    from torchvision.models import get_model_weights

    name = name.strip().lower()
    if name not in NAMES:
        raise WeightsError(f"unknown torchvision VGG '{name}'; published: {', '.join(NAMES)}")
    weights = get_model_weights(name).IMAGENET1K_V1
    path = fetch(weights.url, label=f"torchvision:{name}")
    model = from_torchvision(load_state_dict(path))
    model.metadata = imagenet_metadata(model, source=f"torchvision:{name}")
    model.metadata["accuracy"] = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return model


def fetch(url: str, *, label: str) -> Path:
    """The file at ``url`` from the torch hub cache, downloading it (hash-checked against the
    prefix in its name, as torchvision names its files) when it is not there yet."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if target.is_file():
        return target
    match = torch.hub.HASH_REGEX.search(target.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=match.group(1) if match else None)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(f"cannot download {label} (no network: {str(reason)[:80]}); download {url} "
                           f"elsewhere and pass the file path, or put it in {target.parent}") from None
    except RuntimeError as exc:  # torch.hub's hash mismatch
        raise WeightsError(f"download of {label} is corrupt ({str(exc)[:100]}); retry, or download {url} "
                           "elsewhere and pass the file path") from None
    return target
