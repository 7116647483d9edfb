"""Every reader refuses a damaged file in one line naming the file (idx headers and labels,
CIFAR pickles, archives), instead of a traceback or silently wrong data."""

import gzip
import io
import pickle
import struct
import tarfile
from pathlib import Path

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
    ({**GOOD, b"labels": [0.5, 1.5, 2.0, 3.0]}, "list of integers"),  # was cast to 0, 1, 2, 3 silently
    ({**GOOD, b"labels": np.array([True, False, True, False])}, "list of integers"),
    ({**GOOD, b"data": np.random.default_rng(0).random((4, 3072)).astype(np.float32)}, "must be uint8"),
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


@pytest.mark.parametrize("meta,match", [
    ({b"other": 1}, "expected a dict with b'label_names'"),
    ({b"label_names": 5}, "must be a list of names"),
    ({b"label_names": [b"\xff\xfe"] * 10}, "not UTF-8 text"),
    ([1, 2], "holds a list"),
])
def test_bad_cifar_meta_files(tmp_path, meta, match):
    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    with pytest.raises(DataError, match=match) as info:
        formats.read_cifar_names(tmp_path / "batches.meta", "label_names")
    assert "batches.meta" in str(info.value)


def test_idx_errors_name_the_real_file_and_what_is_wrong(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: labels must be 0\.\.9"):
        formats.read_idx_split(idx_dir(tmp_path / "a", labels=np.array([0, 1, 2, 3, 4, 12])), "train", 10)
    # a wrong dimension byte: the header then describes fewer bytes than the file holds
    header = bytes([0, 0, 8, 2]) + struct.pack(">III", 6, 28, 28) + b"\0" * (6 * 28 * 28)
    with pytest.raises(DataError, match="longer than its header says"):
        formats.read_idx_split(idx_dir(tmp_path / "b", images_header=header), "train", 10)


def folder_with_bad_files(tmp_path):
    from PIL import Image

    import os

    (tmp_path / "good.png").parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"not an image" * 20)
    Image.new("L", (200, 200)).save(tmp_path / "big.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    return {"pipe.png": "not a regular file", "empty.png": "empty (0 bytes)", "text.png": "not a readable image",
            "big.png": "over data.max_pixels", "dangling.png": "cannot be read"}


def test_folder_images_are_skipped_and_counted_with_why(tmp_path, monkeypatch):
    """Each kind of bad file in an image folder is listed (a FIFO too: it is skipped, never opened),
    skipped by the workers and counted under its reason."""
    import warnings

    import torch

    from vggnet.data.folder import FolderItems, collate, decode_thumbnail

    expected = folder_with_bad_files(tmp_path / "cls")
    monkeypatch.setattr(formats, "MAX_PIXELS", 10_000)
    paths = formats.list_images(tmp_path / "cls")
    assert sorted(p.name for p in paths) == sorted([*expected, "good.png"])
    items = FolderItems(paths, torch.zeros(len(paths), dtype=torch.long), 32, [32], train=False, seed=0)
    x, y, bad = collate([items[(i, 0)] for i in range(len(paths))])
    assert len(x) == 1 and {paths[i].name: why for i, why in bad} == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would be raised here
        assert all(decode_thumbnail(p) is None for p in paths if p.name != "good.png")
        assert decode_thumbnail(tmp_path / "cls" / "good.png").shape == (3, 40, 40)


def test_a_decompression_bomb_is_refused_without_pils_warning(tmp_path):
    import warnings

    from PIL import Image

    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")  # 144 MP: over PIL's warning threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="12000x12000 pixels, over the limit of 90,000,000") as info:
            formats.load_image(tmp_path / "bomb.png")
    assert formats.skip_reason(info.value) == "over data.max_pixels"


def test_a_run_on_a_folder_with_bad_files_says_how_many_and_why(tmp_path, capsys, monkeypatch):
    """Through the CLI: each skip is one vggnet line on stderr (no PIL warning, no source lines), the
    end of the run says how many files were skipped and why, and run.json and the report keep it."""
    import json

    from PIL import Image

    from vggnet.cli import main
    from vggnet.train import trainer

    monkeypatch.setattr(trainer, "render_report", lambda out: None)
    for split, n in (("train", 6), ("val", 2)):
        for c in ("a", "b"):
            for i in range(n):
                (tmp_path / "set" / split / c).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (36, 36), (40 * i, 100 if c == "a" else 200, 0)).save(tmp_path / "set" / split /
                                                                                      c / f"{i}.png")
    expected = folder_with_bad_files(tmp_path / "set" / "train" / "a")
    argv = ["train", "--set", "data.name=imagefolder", "--set", f"data.dir={tmp_path / 'set'}", "--set",
            "data.workers=0", "--set", "data.max_pixels=10000", "--set", "model.width=0.125", "--set",
            "train.batch_size=4", "--set", "train.epochs=1", "--set", "train.max_steps=2", "--set",
            "train.progress=false", "--set", "eval.protocols=[centre]", "--set", "data.val_fraction=0.2",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "DecompressionBomb" not in err and "warnings.warn" not in err, err
    assert all(line.startswith("vggnet train: warning: skipped ") for line in err.splitlines()), err
    summary = next(line for line in out.splitlines() if line.startswith("skipped "))
    assert summary.startswith(f"skipped {len(expected)} unreadable image files (") and "run.json" in summary
    info = json.loads((tmp_path / "run" / "run.json").read_text())["skipped_images"]
    assert info["count"] == len(expected)
    assert {Path(p).name: why for p, why in info["files"].items()} == expected
    assert sum(info["reasons"].values()) == len(expected)
    from vggnet.report.run import _run_facts

    facts = dict((k, v) for k, v in _run_facts(tmp_path / "run", []))
    assert facts["image files skipped"].startswith(f"{len(expected)} (")
