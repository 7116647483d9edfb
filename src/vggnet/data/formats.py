"""Readers for the datasets' original on-disk formats, the search for their files, and downloads.

Each reader returns plain tensors or file lists; `sources.py` turns them into `Dataset`s.
Formats: idx (.gz or raw) for MNIST / Fashion-MNIST, the CIFAR python pickles, and image
folders (ImageNet-style and Caltech-256). PIL is used only to decode.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import stat
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vggnet.errors import DataError

ENV_VAR = "VGGNET_DATA"
# Debian/Ubuntu ship Fashion-MNIST as `apt install dataset-fashion-mnist` (the four .gz idx files).
SYSTEM_DIRS: dict[str, list[Path]] = {"fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")]}
APT_PACKAGES: dict[str, str] = {"fashion-mnist": "dataset-fashion-mnist"}
CACHE_DIR = Path("~/.cache/vggnet").expanduser()

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def image_extensions() -> set[str]:
    """Every file extension PIL can open (lower case, with the dot)."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


# ---------------------------------------------------------------- where the files are


def search_roots(name: str, user_dir: str | os.PathLike | None, layouts: Sequence[str] = ()) -> list[Path]:
    """The places searched, in order: data.dir, $VGGNET_DATA, the system copy, the download cache.

    For each root both the root itself, root/<name> and root/<layout> (e.g. torchvision's
    `FashionMNIST/raw`, CIFAR's `cifar-10-batches-py`) are tried.
    """
    roots: list[Path] = []
    if user_dir:
        roots.append(Path(user_dir).expanduser())
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    places: list[Path] = []
    for root in roots:
        places += [root, root / name] + [root / sub for sub in layouts] + [root / name / sub for sub in layouts]
    places += SYSTEM_DIRS.get(name, [])
    places += [download_dir(name, user_dir)] + [download_dir(name, user_dir) / sub for sub in layouts]
    return list(dict.fromkeys(places))


def download_dir(name: str, user_dir: str | os.PathLike | None) -> Path:
    """Where a download lands: <data.dir or $VGGNET_DATA or ~/.cache/vggnet>/<name>."""
    base = user_dir or os.environ.get(ENV_VAR) or CACHE_DIR
    return Path(base).expanduser() / name


def missing_message(name: str, places: Sequence[Path], wanted: str, download_error: str | None) -> str:
    """One line: what is missing, where we looked, and the ways to get it."""
    ways = []
    if name in APT_PACKAGES:
        ways.append(f"`sudo apt install {APT_PACKAGES[name]}`")
    ways.append(f"point data.dir (--data-dir) or ${ENV_VAR} at a folder holding {wanted}")
    if download_error is None:
        ways.append("or set data.download=true when online")
    msg = f"{name} not found (searched {', '.join(str(p) for p in places)}); get it with " + ", ".join(ways)
    if download_error is not None:
        msg += f"; download failed ({download_error}), retry when online"
    return msg


def find_dir(places: Sequence[Path], required: Sequence[str]) -> Path | None:
    """The first place holding every required file (each may also be present gzipped)."""
    for place in places:
        if all((place / f).is_file() or (place / f"{f}.gz").is_file() for f in required):
            return place
    return None


def download(name: str, target: Path) -> None:
    """Fetch a set with torchvision's URLs and md5 checks. Raises OSError/RuntimeError offline."""
    from torchvision import datasets
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    target.mkdir(parents=True, exist_ok=True)
    if name in ("mnist", "fashion-mnist"):
        cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
        for filename, md5 in cls.resources:
            errors = []
            for mirror in cls.mirrors:
                try:
                    download_url(mirror + filename, str(target), filename, md5)
                    break
                except Exception as exc:  # noqa: BLE001 - try the next mirror
                    errors.append(f"{mirror}: {exc}")
            else:
                raise OSError("; ".join(errors))
    elif name in ("cifar10", "cifar100"):
        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        download_and_extract_archive(cls.url, str(target), filename=cls.filename, md5=cls.tgz_md5)
    else:
        raise DataError(f"{name} cannot be downloaded; point data.dir (--data-dir) at its files")


# ---------------------------------------------------------------- idx (MNIST, Fashion-MNIST)


def read_idx(path: Path) -> torch.Tensor:
    """An idx file (raw or .gz) as a uint8 tensor of its stored shape."""
    path = path if path.is_file() else path.with_name(path.name + ".gz")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} cannot be read ({exc}); re-download or reinstall the dataset") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an idx file of uint8 (expected the original MNIST-style idx layout)")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} has a broken idx header ({ndim} dimensions in {len(data)} bytes); re-download it")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        what = "truncated" if body.size < int(np.prod(dims)) else "damaged (longer than its header says)"
        raise DataError(f"{path} is {what}: {body.size} bytes of data for the header's shape {dims}; re-download it")
    return torch.from_numpy(body.copy()).reshape(dims)


def read_idx_split(folder: Path, split: str, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,1,H,W], labels int64 [N]) of the idx 'train' or 'test' files in folder."""
    img_name, lbl_name = IDX_FILES[split]
    images = read_idx(folder / img_name)
    labels = read_idx(folder / lbl_name)
    if images.dim() != 3 or labels.dim() != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {img_name} and {lbl_name} do not match (expected [N,H,W] images and [N] labels)")
    lbl_path = folder / lbl_name
    check_labels(labels.long(), num_classes, lbl_path if lbl_path.is_file() else lbl_path.with_name(lbl_name + ".gz"))
    return images.unsqueeze(1).contiguous(), labels.long()


def check_labels(labels: torch.Tensor, num_classes: int | None, where: Path) -> None:
    """A DataError when a label is outside 0..num_classes-1 (a damaged or foreign file)."""
    if num_classes is None or not len(labels):
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(f"{where}: labels must be 0..{num_classes - 1}, found {low if low < 0 else high}; "
                        "the file is damaged or from another dataset, re-download it")


# ---------------------------------------------------------------- CIFAR python pickles


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else:
    any other global a pickle names is refused, so a tampered file cannot run code."""

    _allowed = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._allowed:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def read_cifar_pickle(path: Path) -> dict:
    """One CIFAR batch file: the original python pickle, read with encoding="bytes" as the
    dataset's authors documented, through an unpickler that admits only numpy arrays."""
    try:
        with open(path, "rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - a damaged pickle raises many types
        raise DataError(f"{path} is not a CIFAR python batch ({type(exc).__name__}: {str(exc)[:80]}); "
                        "re-download the python version") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path} holds a {type(batch).__name__}, not a CIFAR batch dict; re-download the python version")
    return batch


def _key(d: dict, name: str):  # noqa: ANN202 - keys are bytes in the originals, str if re-pickled
    return d[name.encode()] if name.encode() in d else d[name]


def read_cifar(folder: Path, files: Sequence[str], label_key: str,
               num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate CIFAR batches into (uint8 [N,3,32,32], int64 [N]), each batch checked: uint8
    data of shape [N, 3072], N integer labels in range."""
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = read_cifar_pickle(path)
        try:
            data, label = _key(batch, "data"), _key(batch, label_key)
        except KeyError:
            raise DataError(f"{path}: expected a dict with b'data' and b'{label_key}'; re-download it") from None
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            what = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
            raise DataError(f"{path}: b'data' must be uint8 [N, 3072], got {what}; re-download it")
        try:
            raw = np.asarray(label)
            if raw.size and not (np.issubdtype(raw.dtype, np.integer) and not np.issubdtype(raw.dtype, np.bool_)):
                raise TypeError(raw.dtype)
            label = torch.as_tensor(raw.astype(np.int64).reshape(-1))
        except (TypeError, ValueError):
            raise DataError(f"{path}: b'{label_key}' must be a list of integers; re-download it") from None
        if len(label) != len(data):
            raise DataError(f"{path}: {len(data)} images but {len(label)} labels; re-download it")
        check_labels(label, num_classes, path)
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))
        labels.append(label)
    return torch.cat(images), torch.cat(labels)


def read_cifar_names(path: Path, key: str) -> list[str] | None:
    """The class names of a CIFAR meta file (None if it is absent); a DataError if it is damaged."""
    if not path.is_file():
        return None
    meta = read_cifar_pickle(path)
    try:
        names = _key(meta, key)
    except KeyError:
        raise DataError(f"{path}: expected a dict with b'{key}'; re-download it") from None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: b'{key}' must be a list of names; re-download it")
    try:
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    except UnicodeDecodeError:
        raise DataError(f"{path}: b'{key}' holds names that are not UTF-8 text; re-download it") from None


def extract_if_archived(place: Path, archive: str) -> None:
    """Unpack the official tarball if only the archive is present."""
    tgz = place / archive
    if tgz.is_file():
        try:
            with tarfile.open(tgz, "r:gz") as tar:
                tar.extractall(place, filter="data")  # refuses members escaping `place`, links, devices
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{tgz} cannot be unpacked ({type(exc).__name__}: {str(exc)[:100]}); "
                            "delete it and re-download") from None


# ---------------------------------------------------------------- image folders


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside folder (by extension; hidden files and folders left out), sorted.
    Empty, unreadable and non-regular ones (a FIFO, a dangling link) are kept: the loader skips and
    counts them (open_image never blocks on them)."""
    exts = image_extensions()
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in exts and not p.name.startswith(".") and not p.is_dir()
    )


def scan_class_folders(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[Path], list[int]]:
    """root/<class>/<image>: (class names, paths, labels). A class without images is an error."""
    if classes is None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for cls in classes:
        folder = root / cls
        if not folder.is_dir():
            continue
        files = list_images(folder)
        if not files:
            raise DataError(f"class folder {folder} has no usable image (extensions PIL reads); add images or remove it")
        paths += files
        labels += [index[cls]] * len(files)
    return list(classes), paths, labels


LABEL_FILES = ("labels.txt", "labels.csv", "val_labels.txt", "val.txt", "ground_truth.txt")


def scan_flat_split(folder: Path, classes: Sequence[str]) -> tuple[list[Path], list[int]]:
    """Flat files plus a labels file: lines `<file name> <class name or index>` (space or comma)."""
    label_file = next((f for base in (folder, folder.parent) for n in LABEL_FILES if (f := base / n).is_file()), None)
    if label_file is None:
        raise DataError(
            f"{folder} holds flat files but no labels file; expected {folder}/<class>/<image> folders "
            f"or a labels file ({', '.join(LABEL_FILES)}) with lines '<file> <class>'"
        )
    index = {c: i for i, c in enumerate(classes)}
    paths, labels = [], []
    for n, line in enumerate(label_file.read_text().splitlines()):
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) < 2:
            continue
        name, cls = parts[0], parts[1]
        if cls in index:
            label = index[cls]
        elif cls.isdigit() and int(cls) < len(classes):
            label = int(cls)
        elif n == 0:
            continue  # a header line
        else:
            raise DataError(f"{label_file}:{n + 1}: class {cls!r} is not one of the train/ classes")
        path = folder / name
        if path.is_file():
            paths.append(path)
            labels.append(label)
    if not paths:
        raise DataError(f"{label_file} names no file present in {folder}")
    return paths, labels


CALTECH_DIR = re.compile(r"^(\d{3})\.(.+)$")


def scan_caltech256(root: Path, clutter: bool) -> tuple[list[str], list[list[Path]]]:
    """Caltech-256's `NNN.name` folders (in `256_ObjectCategories/` or root): names, files per class."""
    base = root / "256_ObjectCategories" if (root / "256_ObjectCategories").is_dir() else root
    folders = sorted(d for d in base.iterdir() if d.is_dir() and CALTECH_DIR.match(d.name)) if base.is_dir() else []
    if not folders:
        raise DataError(
            f"{root} is not Caltech-256; expected 256_ObjectCategories/001.ak47/001_0001.jpg ... 257.clutter/"
        )
    if not clutter:
        folders = [d for d in folders if not d.name.endswith("clutter")]
    names = [CALTECH_DIR.match(d.name).group(2) for d in folders]
    files = []
    for d in folders:
        imgs = list_images(d)
        if not imgs:
            raise DataError(f"class folder {d} has no usable image; restore it from the Caltech-256 archive")
        files.append(imgs)
    return names, files


# Images over this many pixels are refused (decompression bombs); data.max_pixels sets it for a
# run (sources.get), before the DataLoader workers start, so they inherit it.
MAX_PIXELS = 90_000_000


def _refuse(message: str, reason: str) -> DataError:
    """A DataError naming the file, with ``reason``: the short cause a folder loader counts it under."""
    exc = DataError(message)
    exc.reason = reason
    return exc


def skip_reason(exc: BaseException) -> str:
    """Why an image file was skipped, in a few words (the counts the run summary shows)."""
    return getattr(exc, "reason", "not a readable image")


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """``Image.open`` of a regular, non-empty file whose header says at most ``max_pixels``
    (default MAX_PIXELS) pixels; a DataError naming the file otherwise. Never blocks on a FIFO."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise _refuse(f"{path} cannot be read ({exc.strerror})", "cannot be read") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(f"{path} is not a regular file (a FIFO, device or folder)", "not a regular file")
    if info.st_size == 0:
        raise _refuse(f"{path} is empty (0 bytes)", "empty (0 bytes)")
    limit = max_pixels or MAX_PIXELS
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the limit is checked here, in one line
    try:
        im = Image.open(path)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        raise _refuse(f"{path} is not a readable image ({type(exc).__name__}: {exc})", "not a readable image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if im.size[0] * im.size[1] > limit:
        im.close()
        raise _refuse(f"{path} is {im.size[0]}x{im.size[1]} pixels, over the limit of {limit:,} "
                      "(data.max_pixels)", "over data.max_pixels")
    return im


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """Decode one file to uint8 CHW: 1 channel if stored gray, else 3 (RGB). DataError if unreadable."""
    im = open_image(path)
    try:
        with im:
            im = im.convert("L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB")
            arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad files
        raise _refuse(f"{path} is not a readable image ({type(exc).__name__}: {exc})", "not a readable image") from None
    tensor = torch.from_numpy(arr.copy())
    return tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1).contiguous()
