"""Checks that need the machine, done before anything is allocated: is the device there, and
can the model fit in its memory at all (a lower bound: weights, gradients and one copy of the
activations of a batch; a config that fails it cannot run, one that passes may still be tight)."""

from __future__ import annotations

import os

import torch

from vggnet.config import RunConfig
from vggnet.errors import ConfigError
from vggnet.model import memory
from vggnet.model.vgg import build_model


def check_device(name: str) -> None:
    """A ConfigError when ``device`` names hardware this machine does not have."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but no CUDA device is visible here; use device=cpu or device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but this machine has {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError("device=mps but Metal is not available here; use device=cpu or device=auto")


def memory_bytes(device: torch.device) -> int:
    """The memory a run on ``device`` can have at most: the GPU's, or the machine's RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def required_bytes(cfg: RunConfig, num_classes: int, channels: int, batch_size: int) -> tuple[int, int]:
    """(bytes, parameters) that one training step holds at least, from the layer shapes on the meta
    device (nothing allocated): the weights, the optimizer state and the activations autograd keeps
    at the end of the forward pass (model/memory.py; the gradients of the last step are freed by then)."""
    m = cfg.model
    with torch.device("meta"):
        model = build_model(m.name, num_classes=num_classes, batch_norm=m.batch_norm, head=m.head,
                            in_channels=channels, width=m.width, dropout=m.dropout, init=m.init, seed=None)
    parts = memory.estimate(model, cfg.data.image_size, batch_size, amp=cfg.train.amp, optimizer=cfg.train.optimizer)
    return parts["params"] + parts["optimizer"] + parts["activations"], sum(p.numel() for p in model.parameters())


def check_fits(cfg: RunConfig, num_classes: int, channels: int, device: torch.device, batch_size: int) -> None:
    """A ConfigError when even the lower bound of one training step exceeds ``device``'s memory."""
    need, params = required_bytes(cfg, num_classes, channels, batch_size)
    have = memory_bytes(device)
    if need > have:
        raise ConfigError(f"the model cannot fit: one training step needs at least {need / 2**30:,.1f} GiB "
                          f"({params:,} parameters and the activations of batch {batch_size}), "
                          f"{device} has {have / 2**30:,.1f} GiB; lower model.width, train.batch_size or "
                          "data.image_size")
