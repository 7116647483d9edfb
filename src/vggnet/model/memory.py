"""How much memory training a VGG takes, before running it: parameters, gradients, optimizer state
and the activations autograd keeps for the backward pass, from the layer shapes alone (a
forward pass on the meta device); the measured peak on CPU to check the estimate against; and
activation checkpointing per block, which trades a second forward pass for most of it.

What autograd keeps, per layer (train mode): every conv and batch-norm output (an in-place ReLU
keeps the tensor it overwrote, and the next layer saves it as its input); each max-pool's output
and its int64 argmax indices; each FC layer's output, and after dropout its boolean mask and its
output; the input batch; the logits and their log-softmax (the loss). AMP (bf16/fp16 autocast)
halves the float activations and keeps a 16-bit copy of every weight for the pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vggnet.errors import ConfigError

OPTIMIZER_STATE = {"sgd": 1, "adam": 2}  # fp32 tensors per parameter: momentum; Adam's two moments
_COUNTED = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.MaxPool2d, nn.Dropout, nn.LocalResponseNorm)


def activation_bytes(model: nn.Module, image_size: int, batch_size: int, *, amp: bool = False) -> int:
    """Bytes of the tensors autograd keeps from one training forward pass (module docstring)."""
    from vggnet.model.vgg import from_config

    if image_size < 1 or batch_size < 1:
        raise ConfigError(f"image size and batch size must be positive, got {image_size} and {batch_size}")
    element = 2 if amp else 4
    sizes: list[tuple[nn.Module, int]] = []
    with torch.device("meta"):
        meta = from_config(model.config).train()
        x = torch.empty(batch_size, model.config["in_channels"], image_size, image_size)
    hooks = [m.register_forward_hook(lambda mod, _i, out: sizes.append((mod, out.numel())))
             for m in meta.modules() if isinstance(m, _COUNTED)]
    try:
        logits = meta(x)
    finally:
        for hook in hooks:
            hook.remove()
    total = x.numel() * 4 + 2 * logits.numel() * 4  # the batch; logits and log-softmax
    for module, numel in sizes:
        total += numel * element
        if isinstance(module, nn.MaxPool2d):
            total += numel * 8  # argmax indices
        elif isinstance(module, nn.Dropout) and module.p > 0:
            total += numel  # boolean mask
        elif isinstance(module, nn.LocalResponseNorm):
            total += 3 * numel * element  # the square, its window average, that to the power beta
    if amp:
        total += 2 * sum(m.weight.numel() for m in meta.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return int(total)


def estimate(model: nn.Module, image_size: int, batch_size: int, *, amp: bool = False,
             optimizer: str = "sgd") -> dict[str, int]:
    """Bytes of parameters, gradients, optimizer state, activations and their total for training
    ``model`` on ``batch_size`` images of ``image_size``. The total is an upper bound on the peak:
    in the backward pass gradients fill up as activations are freed."""
    if optimizer not in OPTIMIZER_STATE:
        raise ConfigError(f"unknown optimizer '{optimizer}'; valid: {', '.join(OPTIMIZER_STATE)}")
    params = sum(p.numel() for p in model.parameters()) * 4
    out = {"params": params, "gradients": params, "optimizer": params * OPTIMIZER_STATE[optimizer],
           "activations": activation_bytes(model, image_size, batch_size, amp=amp)}
    out["total"] = sum(out.values())
    return out


def measured_activation_peak(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> int:
    """The peak of CPU memory allocated during one training forward pass and loss (PyTorch's
    profiler with memory profiling), over what was allocated before it: the activations."""
    from torch.profiler import ProfilerActivity, profile

    model.train()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = nn.functional.cross_entropy(model(images), labels)
    del loss
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return int(peak)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """`vggnet summary --memory` lines: one row per config, in GiB."""
    keys = ("params", "gradients", "optimizer", "activations", "total")
    lines = [f"{'config':<8}" + "".join(f"{k:>13}" for k in keys) + "   (GiB)"]
    lines += [f"{r['name']:<8}" + "".join(f"{r[k] / 2**30:>13.2f}" for k in keys) for r in rows]
    return lines


def blocks(features: nn.Sequential) -> list[nn.Sequential]:
    """The conv stack cut after each max-pool: the paper's five blocks."""
    cuts = [i + 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    return [features[a:b] for a, b in zip([0] + cuts, cuts)]


@contextlib.contextmanager
def _frozen_batch_norm(block: nn.Module) -> Iterator[None]:
    """BatchNorm statistics left as they are: the recomputation must not count the batch twice."""
    norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def checkpointed(features: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``features(x)`` keeping only each block's input for the backward pass; the block's
    activations are recomputed there (one more forward pass of the conv stack). Same outputs,
    gradients and BatchNorm statistics as without."""
    for block in blocks(features):
        calls = [0]

        def run(inp: torch.Tensor, block: nn.Module = block, calls: list[int] = calls) -> torch.Tensor:
            calls[0] += 1
            if calls[0] == 1:
                return block(inp)
            with _frozen_batch_norm(block):
                return block(inp)

        x = checkpoint(run, x, use_reentrant=False)
    return x
