"""One loader for ILSVRC's and VOC's XML box files, on files written here in their exact
layouts; bad boxes and files are skipped and counted."""

from collections import Counter
from pathlib import Path

import pytest
import torch
from data_layouts import cfg, write_jpeg

from vggnet.data import sources
from vggnet.data.boxes import read_annotation
from vggnet.errors import DataError

# An ILSVRC-2012 localisation annotation as the devkit ships it (no extension in <filename>).
ILSVRC = """<annotation>
	<folder>{wnid}</folder>
	<filename>{name}</filename>
	<source><database>ILSVRC_2012</database></source>
	<size><width>{w}</width><height>{h}</height><depth>3</depth></size>
	<segmented>0</segmented>
{objects}</annotation>
"""
OBJECT = """	<object>
		<name>{cls}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
		<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>
	</object>
"""
# Pascal VOC 2007 (<filename> with the extension, <owner>, ...).
VOC = """<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename>
<source><database>The VOC2007 Database</database><annotation>PASCAL VOC2007</annotation></source>
<owner><flickrid>x</flickrid></owner><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
<segmented>0</segmented>{objects}</annotation>"""


def objects(*boxes):
    return "".join(OBJECT.format(cls=c, x1=a, y1=b, x2=x, y2=y) for c, (a, b, x, y) in boxes)


def test_read_annotation_converts_one_based_pixels_to_corners(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(ILSVRC.format(wnid="n01", name="n01_1", w=100, h=80,
                                  objects=objects(("n01", (1, 1, 100, 80)), ("n01", (11, 21, 30, 40)))))
    ann = read_annotation(path)
    assert (ann.filename, ann.width, ann.height, ann.names) == ("n01_1", 100, 80, ["n01", "n01"])
    assert ann.boxes == [(0.0, 0.0, 100.0, 80.0), (10.0, 20.0, 30.0, 40.0)]  # the whole image, and 20x20 px


def test_bad_boxes_and_files_are_skipped_and_counted(tmp_path):
    skipped = Counter()
    outside = tmp_path / "outside.xml"
    outside.write_text(ILSVRC.format(wnid="n", name="o", w=50, h=50,
                                     objects=objects(("n", (1, 1, 51, 20)), ("n", (5, 5, 20, 20)),
                                                     ("n", (10, 9, 9, 30)))))
    ann = read_annotation(outside, skipped)
    assert ann.boxes == [(4.0, 4.0, 20.0, 20.0)]
    empty = tmp_path / "empty.xml"
    empty.write_text(ILSVRC.format(wnid="n", name="e", w=50, h=50, objects=""))
    broken = tmp_path / "broken.xml"
    broken.write_text("<annotation><size><width>5</width>")
    assert read_annotation(empty, skipped) is None and read_annotation(broken, skipped) is None
    assert skipped == {"box outside the image": 1, "box without area": 1, "xml without a box": 1,
                       "unreadable xml": 1}


def make_ilsvrc(root: Path) -> Path:
    for split, per in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(("n01440764", "n01443537")):
            for i in range(per):
                name = f"{wnid}_{i}" if split == "train" else f"ILSVRC2012_val_{c}{i}"
                sub = Path(split) / wnid if split == "train" else Path(split)
                (root / "Annotations/CLS-LOC" / sub).mkdir(parents=True, exist_ok=True)
                (root / "Data/CLS-LOC" / sub).mkdir(parents=True, exist_ok=True)
                boxes = [(wnid, (3, 4, 30, 20))] + ([(wnid, (10, 10, 40, 36))] if i == 0 else [])
                (root / "Annotations/CLS-LOC" / sub / f"{name}.xml").write_text(
                    ILSVRC.format(wnid=wnid, name=name, w=48, h=40, objects=objects(*boxes)))
                write_jpeg(root / "Data/CLS-LOC" / sub / f"{name}.JPEG", 48, 40, seed=i)
    # an annotation whose image is missing, and one without a box: both skipped
    (root / "Annotations/CLS-LOC/train/n01440764/n01440764_9.xml").write_text(
        ILSVRC.format(wnid="n01440764", name="x", w=48, h=40, objects=objects(("n01440764", (1, 1, 9, 9)))))
    (root / "Annotations/CLS-LOC/val/ILSVRC2012_val_99.xml").write_text(
        ILSVRC.format(wnid="", name="ILSVRC2012_val_99", w=48, h=40, objects=""))
    write_jpeg(root / "Data/CLS-LOC/val/ILSVRC2012_val_99.JPEG", 48, 40, seed=0)
    return root


def test_ilsvrc_layout_one_entry_per_box(tmp_path, capsys):
    ds = sources.get(cfg(name="ilsvrc-loc", dir=str(make_ilsvrc(tmp_path)), val_fraction=0.0))
    assert ds.classes == ["n01440764", "n01443537"]
    assert len(ds.train) == 2 * (3 + 1) and len(ds.test) == 2 * (2 + 1)  # image 0 of each class has 2 boxes
    assert torch.equal(ds.test.boxes[0], torch.tensor([2.0, 3.0, 30.0, 20.0]))
    assert ds.test.paths[0].name == "ILSVRC2012_val_00.JPEG" and ds.test.paths[0] == ds.test.paths[1]
    assert ds.box_skipped == {"missing image": 1, "xml without a box": 1}
    assert "skipped 2" in capsys.readouterr().out


def test_voc_layout_reads_the_same_way(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "ImageSets/Main").mkdir(parents=True)
    ids = {"train": ["000005", "000007"], "val": ["000009"]}
    for split, names in ids.items():
        (tmp_path / f"ImageSets/Main/{split}.txt").write_text("\n".join(names) + "\n")
        for k, name in enumerate(names):
            body = objects(("dog" if k else "cat", (5, 6, 25, 30)), ("person", (2, 2, 10, 10)))
            (tmp_path / f"Annotations/{name}.xml").write_text(VOC.format(name=name, w=32, h=32, objects=body))
            write_jpeg(tmp_path / f"JPEGImages/{name}.jpg", 32, 32, seed=k)
    ds = sources.get(cfg(name="voc-loc", dir=str(tmp_path)))
    assert ds.classes == ["cat", "dog", "person"]
    assert len(ds.train) == 4 and len(ds.test) == 2  # no test.txt: val is the test split
    assert ds.test.labels.tolist() == [0, 2]


def test_a_folder_without_annotations_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="Annotations/CLS-LOC not found"):
        sources.get(cfg(name="ilsvrc-loc", dir=str(tmp_path)))


def test_a_run_on_bad_box_files_skips_and_counts_them(tmp_path, capsys, one_thread):
    """The bad-input list end to end: a box outside the image (dropped, its image kept for its
    good box), an XML file without a box and one whose image is missing are skipped and counted
    in one line; the box net trains on the rest and is tested."""
    from vggnet.cli import main

    root = make_ilsvrc(tmp_path / "ilsvrc")
    wnid = "n01443537"
    (root / f"Annotations/CLS-LOC/train/{wnid}/{wnid}_7.xml").write_text(
        ILSVRC.format(wnid=wnid, name=f"{wnid}_7", w=48, h=40,
                      objects=objects((wnid, (5, 5, 30, 30)), (wnid, (20, 10, 60, 30)))))  # xmax 60 > 48
    write_jpeg(root / f"Data/CLS-LOC/train/{wnid}/{wnid}_7.JPEG", 48, 40, seed=7)
    sets = ["data.name=ilsvrc-loc", f"data.dir={root}", "data.image_size=32", "data.val_fraction=0.0",
            "model.name=A", "model.width=0.0625", "model.head=fc", "model.box_head=scr", "train.batch_size=4",
            "train.epochs=1", "train.progress=false", "train.health_every=0", "train.amp=false", "eval.scales=[32]"]
    assert main(["train", *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("ilsvrc-loc: skipped"))
    assert line.startswith("ilsvrc-loc: skipped 3 (") and all(
        part in line for part in ("1 missing image", "1 xml without a box", "1 box outside the image")), line
    assert "test localisation error (4 images, IoU > 0.5)" in out  # the 4 val images with a box; 99's has none
