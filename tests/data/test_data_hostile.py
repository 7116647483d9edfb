"""Every reader refuses a damaged file in one line naming the file (idx headers and labels,
CIFAR pickles, archives), instead of a traceback or silently wrong data."""

import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest

from vggnet.data import formats
from vggnet.errors import DataError

from data_layouts import write_idx


def idx_dir(tmp_path, labels=None, images_header=None):
    n = 6
    img, lbl = formats.IDX_FILES["train"]
    write_idx(tmp_path / f"{img}.gz", np.zeros((n, 28, 28)))
    write_idx(tmp_path / f"{lbl}.gz", np.arange(n) % 10 if labels is None else labels)
    if images_header is not None:
        with gzip.open(tmp_path / f"{img}.gz", "wb") as f:
            f.write(images_header)
    return tmp_path


@pytest.mark.parametrize("header,match", [
    (bytes([0, 0, 8, 9]) + b"\0" * 40, "broken idx header"),
    (bytes([0, 0, 8, 0]), "broken idx header"),
    (bytes([0, 0, 8, 3]) + struct.pack(">I", 6), "broken idx header"),
    (bytes([0, 0, 8, 3]) + struct.pack(">III", 6, 28, 28) + b"\0" * 10, "truncated"),
    (bytes([1, 2, 3, 4]), "not an idx file"),
])
def test_bad_idx_headers(tmp_path, header, match):
    with pytest.raises(DataError, match=match):
        formats.read_idx_split(idx_dir(tmp_path, images_header=header), "train", 10)


@pytest.mark.parametrize("labels", [np.array([0, 1, 2, 3, 4, 12]), np.array([0, 1, 2, 3, 4, 255])])
def test_idx_labels_out_of_range(tmp_path, labels):
    with pytest.raises(DataError, match=r"labels must be 0\.\.9"):
        formats.read_idx_split(idx_dir(tmp_path, labels=labels), "train", 10)


def cifar(path, payload):
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=2)
    return path.parent


GOOD = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}


@pytest.mark.parametrize("payload,match", [
    (7, "holds a int"),
    ([1, 2], "holds a list"),
    ({b"labels": [0]}, "expected a dict with b'data'"),
    ({b"data": GOOD[b"data"]}, "expected a dict with b'data' and b'labels'"),
    ({**GOOD, b"data": np.zeros((4, 3072), np.float32)}, "must be uint8"),
    ({**GOOD, b"data": np.zeros((4, 100), np.uint8)}, "must be uint8 \\[N, 3072\\]"),
    ({**GOOD, b"labels": [0, 1, 2]}, "4 images but 3 labels"),
    ({**GOOD, b"labels": [0, 1, 2, 10]}, r"labels must be 0\.\.9"),
    ({**GOOD, b"labels": [0, 1, 2, -1]}, r"labels must be 0\.\.9, found -1"),
    ({**GOOD, b"labels": ["a", "b", "c", "d"]}, "list of integers"),
])
def test_bad_cifar_batches(tmp_path, payload, match):
    folder = cifar(tmp_path / "data_batch_1", payload)
    with pytest.raises(DataError, match=match) as info:
        formats.read_cifar(folder, ["data_batch_1"], "labels", 10)
    assert "data_batch_1" in str(info.value) and "\n" not in str(info.value)


def test_garbage_and_truncated_cifar_pickles(tmp_path):
    (tmp_path / "garbage").write_bytes(b"\x80\x02garbage" * 10)
    good = pickle.dumps(GOOD, protocol=2)
    (tmp_path / "truncated").write_bytes(good[: len(good) // 2])
    for name in ("garbage", "truncated"):
        with pytest.raises(DataError, match=f"{name} is not a CIFAR python batch"):
            formats.read_cifar(tmp_path, [name], "labels", 10)


def tar_with(path, name, data=b"x"):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("make", [
    lambda p: tar_with(p, "../escaped.txt"),
    lambda p: tar_with(p, "a/../../escaped.txt"),
    lambda p: p.write_bytes(b"not a tarball at all" * 50),
    lambda p: (tar_with(p, "cifar-10-batches-py/data_batch_1", np.random.default_rng(0).bytes(100000)),
               p.write_bytes(p.read_bytes()[:300])),
])
def test_bad_archives(tmp_path, make):
    place = tmp_path / "place"
    place.mkdir()
    make(place / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz cannot be unpacked"):
        formats.extract_if_archived(place, "cifar-10-python.tar.gz")
    assert not (tmp_path / "escaped.txt").exists()


def test_image_files_that_are_not_images(tmp_path):
    from PIL import Image

    os_fifo = tmp_path / "pipe.png"
    __import__("os").mkfifo(os_fifo)
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    cases = {"pipe.png": "not a regular file", "empty.png": r"empty \(0 bytes\)", "big.png": "over the limit"}
    old, formats.MAX_PIXELS = formats.MAX_PIXELS, 10_000
    try:
        for name, match in cases.items():
            with pytest.raises(DataError, match=match):  # a FIFO would block a plain open()
                formats.load_image(tmp_path / name)
    finally:
        formats.MAX_PIXELS = old
    assert formats.load_image(tmp_path / "big.png").shape == (1, 200, 200)
