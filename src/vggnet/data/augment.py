"""The paper's preprocessing and augmentation as batched tensor ops (CPU or CUDA, any batch).

Images are NCHW, uint8 in [0, 255] or float in [0, 1] units; geometric ops keep the dtype.
Randomness comes from the `torch.Generator` passed in (drawn on the generator's device, then
moved to the images' device), so the same seed gives the same batch on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from vggnet.config import NORMALIZE
from vggnet.errors import ConfigError

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's "L" conversion


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _randint(low: int, high: torch.Tensor | int, n: int, generator: torch.Generator | None,
             device: torch.device) -> torch.Tensor:
    """n integers in [low, high] inclusive; high may be a per-item tensor."""
    u = torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64).to(device)
    high_t = torch.as_tensor(high, device=device)
    return (low + torch.floor(u * (high_t - low + 1))).long()


# ---------------------------------------------------------------- scale (paper section 3.1)


def sample_scales(n: int, scale: Sequence[int], generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Training scales S: [S] fixed, or [Smin, Smax] with S ~ U[Smin, Smax] per image (scale jittering)."""
    if len(scale) == 1 or scale[0] == scale[-1]:
        return torch.full((n,), int(scale[0]), dtype=torch.long, device=device)
    lo, hi = int(min(scale)), int(max(scale))
    return _randint(lo, hi, n, generator, torch.device(device))


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() if images.dtype == torch.uint8 else images


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Back to the input dtype (uint8 rounded and clamped)."""
    return out.round_().clamp_(0, 255).to(torch.uint8) if ref.dtype == torch.uint8 else out


def rescale(images: torch.Tensor, size: int) -> torch.Tensor:
    """Isotropic rescale so the shorter side is `size` (antialiased bilinear)."""
    h, w = images.shape[-2:]
    r = size / min(h, w)
    new = (max(size, round(h * r)), max(size, round(w * r)))
    if new == (h, w):
        return images
    out = F.interpolate(_as_float(images), size=new, mode="bilinear", align_corners=False, antialias=True)
    return _like(out, images)


def scaled_random_crop(images: torch.Tensor, scales: torch.Tensor, size: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image: rescale so the shorter side is scales[i], then take a random size x size crop.

    One `grid_sample` over the batch samples each crop straight from the source image (bilinear,
    no antialiasing: meant for upscaling small in-memory sets such as CIFAR 32 -> 256).
    """
    n, _, h, w = images.shape
    dev = images.device
    r = scales.to(dev, torch.float64) / min(h, w)  # rescale factor per image
    sh, sw = torch.round(h * r).long().clamp(min=size), torch.round(w * r).long().clamp(min=size)
    oy = _randint(0, sh - size, n, generator, dev).double()
    ox = _randint(0, sw - size, n, generator, dev).double()
    # crop pixel centre u in the rescaled image maps to source pixel (oy + u + 0.5) / r - 0.5;
    # grid_sample's normalised coordinate (align_corners=False) is (2 * src + 1) / h - 1.
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=dev)
    theta[:, 0, 0] = size / (r * w)
    theta[:, 0, 2] = (2 * ox + size) / (r * w) - 1
    theta[:, 1, 1] = size / (r * h)
    theta[:, 1, 2] = (2 * oy + size) / (r * h) - 1
    grid = F.affine_grid(theta.float(), [n, 1, size, size], align_corners=False)
    out = F.grid_sample(_as_float(images), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return _like(out, images)


def scale_jitter(images: torch.Tensor, smin: int, smax: int, size: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's multi-scale training: S ~ U[smin, smax] per image, random crop. Returns (crops, S)."""
    scales = sample_scales(len(images), [smin, smax], generator, images.device)
    return scaled_random_crop(images, scales, size, generator), scales


# ---------------------------------------------------------------- crops, padding, flips


def _crop_at(images: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, size: int) -> torch.Tensor:
    """Per-image crops at offsets (oy, ox): two gathers, no Python loop."""
    n, c, _, w = images.shape
    ar = torch.arange(size, device=images.device)
    rows = (oy[:, None] + ar).view(n, 1, size, 1).expand(n, c, size, w)
    out = images.gather(2, rows)
    cols = (ox[:, None] + ar).view(n, 1, 1, size).expand(n, c, size, size)
    return out.gather(3, cols)


def random_crop(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """An independent random size x size crop of each image."""
    n, _, h, w = images.shape
    if h < size or w < size:
        raise ConfigError(f"crop {size} is larger than the images ({h}x{w}); lower data.image_size or set data.scale")
    oy = _randint(0, h - size, n, generator, images.device)
    ox = _randint(0, w - size, n, generator, images.device)
    return _crop_at(images, oy, ox, size)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window (the paper's single-crop test uses it after rescaling to Q)."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top : top + size, left : left + size]


def centre_pad(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (black) to at least size x size, image centred; e.g. Fashion-MNIST 28 -> 32."""
    h, w = images.shape[-2:]
    dh, dw = max(0, size - h), max(0, size - w)
    if dh == dw == 0:
        return images
    return F.pad(images, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def pad_random_crop(images: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                    size: int | None = None) -> torch.Tensor:
    """Small-image augmentation: zero-pad by `pad` on each side, random crop back to `size`
    (default the input size): shifts of up to +-pad pixels."""
    h = images.shape[-2]
    size = size or h
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad))
    return random_crop(images, size, generator) if images.shape[-1] != size or images.shape[-2] != size else images


def hflip(images: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror left-right: every image if generator is None, else each with probability p."""
    if generator is None:
        return images.flip(-1)
    mask = torch.rand(len(images), generator=generator, device=_gen_device(generator)) < p
    return torch.where(mask.to(images.device).view(-1, 1, 1, 1), images.flip(-1), images)


def random_erase(images: torch.Tensor, p: float, generator: torch.Generator | None = None,
                 area: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017; torchvision's ``RandomErasing`` defaults): with
    probability p, one rectangle of each image (a random share of its area, aspect ratio drawn
    log-uniformly) is set to 0, the mean after normalisation. A rectangle that does not fit is
    clamped to the image instead of redrawn. Not in the paper: a small-image regulariser."""
    n, _, h, w = images.shape
    dev = images.device

    def uniform() -> torch.Tensor:
        return torch.rand(n, generator=generator, device=_gen_device(generator), dtype=torch.float64).to(dev)

    apply = uniform() < p
    share = area[0] + (area[1] - area[0]) * uniform()
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * uniform())
    eh = torch.sqrt(share * h * w * aspect).round().clamp(1, h).long()
    ew = torch.sqrt(share * h * w / aspect).round().clamp(1, w).long()
    top = torch.floor(uniform() * (h - eh + 1)).long()
    left = torch.floor(uniform() * (w - ew + 1)).long()
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    inside_rows = (rows >= top[:, None]) & (rows < (top + eh)[:, None])  # [n, h]
    inside_cols = (cols >= left[:, None]) & (cols < (left + ew)[:, None])  # [n, w]
    mask = inside_rows[:, :, None] & inside_cols[:, None, :] & apply[:, None, None]
    return images.masked_fill(mask[:, None], 0)


# ---------------------------------------------------------------- colour (AlexNet PCA shift)


def colour_shift(images: torch.Tensor, eigval: Sequence[float] | torch.Tensor, eigvec: Sequence[Sequence[float]] | torch.Tensor,
                 alpha_std: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add sum_i alpha_i * lambda_i * p_i to every pixel, alpha_i ~ N(0, alpha_std) per image
    (Krizhevsky et al. 2012). lambda, p: eigenvalues/eigenvectors (columns) of the training set's
    RGB covariance in [0, 1] units. Returns float in [0, 1] units (uint8 input is scaled)."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    n = len(x)
    alpha = torch.randn(n, 3, generator=generator, device=_gen_device(generator)).to(x.device) * alpha_std
    lam = torch.as_tensor(eigval, dtype=torch.float32, device=x.device)
    vec = torch.as_tensor(eigvec, dtype=torch.float32, device=x.device)
    delta = (alpha * lam) @ vec.T  # [n, 3]: row i is sum_j alpha_ij lambda_j p_j
    return x + delta.view(n, 3, 1, 1)


# ---------------------------------------------------------------- statistics and normalisation


@dataclass
class Stats:
    """Training-set statistics, stored with the run and with the weights."""

    mean: list[float]  # per channel, in [0,1] units
    std: list[float]
    eigval: list[float] | None = None  # RGB PCA for colour shift (3 channels only)
    eigvec: list[list[float]] | None = None  # columns are the eigenvectors

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Stats:
        return cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]],
                   eigval=None if d.get("eigval") is None else [float(v) for v in d["eigval"]],
                   eigvec=None if d.get("eigvec") is None else [[float(v) for v in row] for row in d["eigvec"]])

    def for_channels(self, channels: int) -> Stats:
        """Statistics after convert_channels: 1 -> 3 repeats; 3 -> 1 takes the luminance of the mean
        and of the std (exact for the mean, an upper bound for the std)."""
        have = len(self.mean)
        if have == channels:
            return self
        if have == 1 and channels == 3:
            return Stats(self.mean * 3, self.std * 3)
        if have == 3 and channels == 1:
            return Stats([sum(w * m for w, m in zip(LUMA, self.mean))], [sum(w * s for w, s in zip(LUMA, self.std))])
        raise ConfigError(f"cannot convert {have}-channel statistics to {channels} channels")


def compute_stats(split, *, max_images: int = 10000, seed: int = 0) -> Stats:  # noqa: ANN001 - sources.Split
    """Per-channel mean/std and (RGB) the PCA of pixel colours, from up to max_images training
    images chosen with the seed. Folder sets are decoded at reduced size (JPEG draft, shorter side
    >= 64): the mean is unchanged, std and eigenvalues are slightly smoothed."""
    n = len(split)
    if n == 0:
        raise ConfigError("cannot compute statistics of an empty training split")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=g)[: min(n, max_images)]
    if split.images is not None:
        chunks = (split.images[pick[i : i + 512]] for i in range(0, len(pick), 512))
    else:
        from concurrent.futures import ThreadPoolExecutor

        from vggnet.data.folder import decode_thumbnail

        pool = ThreadPoolExecutor(max_workers=4)  # PIL decodes outside the GIL
        chunks = (t for t in pool.map(decode_thumbnail, [split.paths[i] for i in pick.tolist()]) if t is not None)
    s1 = s2 = None
    count = 0
    for chunk in chunks:
        c = chunk.shape[-3]
        x = chunk.reshape(-1, c, chunk.shape[-2] * chunk.shape[-1]).double().div_(255).transpose(1, 2).reshape(-1, c)
        s1 = x.sum(0) if s1 is None else s1 + x.sum(0)
        s2 = x.T @ x if s2 is None else s2 + x.T @ x
        count += len(x)
    if split.images is None:
        pool.shutdown()
    if s1 is None:
        raise ConfigError("no readable image among the sampled training files")
    mean = s1 / count
    cov = s2 / count - torch.outer(mean, mean)
    std = cov.diagonal().clamp(min=1e-12).sqrt()
    stats = Stats(mean.tolist(), std.tolist())
    if c == 3:
        eigval, eigvec = torch.linalg.eigh(cov)
        stats.eigval = eigval.clamp(min=0).flip(0).tolist()  # largest first
        stats.eigvec = eigvec.flip(1).tolist()
    return stats


def check_normalize(mode: str, key: str = "data.normalize") -> None:
    if mode not in NORMALIZE:
        raise ConfigError(f"{key}={mode!r} is not one of {', '.join(NORMALIZE)}")


def normalize(images: torch.Tensor, stats: Stats, mode: str) -> torch.Tensor:
    """float32 net input (see NORMALIZE). uint8 is first scaled to [0, 1]; the stats are in
    [0, 1] units and RGB order, whatever the mode. "paper" and "caffe" multiply back to 0-255,
    so the first conv sees what Caffe fed it (the init's regime; LRN's k term is then small)."""
    check_normalize(mode)
    c = images.shape[-3]
    stats = stats.for_channels(c)
    scale = 1 / 255 if images.dtype == torch.uint8 else 1.0
    if mode == "none":
        return images.float() * scale
    if mode == "caffe":
        images, stats = images.flip(-3), Stats(stats.mean[::-1], stats.std[::-1])
    mean = torch.tensor(stats.mean, dtype=torch.float32, device=images.device).view(c, 1, 1)
    if mode == "standardize":
        inv = 1 / torch.tensor(stats.std, device=images.device).view(c, 1, 1)
    else:
        inv = torch.full_like(mean, 255.0 if mode in ("paper", "caffe") else 1.0)
    # (x * scale - mean) * inv, fused as x * a + b
    return torch.addcmul((-mean * inv).expand(images.shape[-3:]), images.float(), inv * scale)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """1 -> 3 repeats the gray channel; 3 -> 1 takes the luminance (ITU-R 601-2); else unchanged."""
    c = images.shape[-3]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:]).contiguous()
    if c == 3 and channels == 1:
        w = torch.tensor(LUMA, dtype=torch.float32, device=images.device).view(3, 1, 1)
        out = (_as_float(images) * w).sum(-3, keepdim=True)
        return _like(out, images)
    raise ConfigError(f"cannot convert {c}-channel images to {channels} channels; set model input channels to {c}")


def check_scale(scale: Sequence[int] | None, size: int) -> None:
    if scale is not None and (len(scale) not in (1, 2) or min(scale) < size):
        raise ConfigError(f"data.scale={list(scale)} must be [S] or [Smin, Smax] with S >= data.image_size={size}")

