"""eval.json keeps every (split, protocol, scales, images) entry, dated; the top level stays the
most complete evaluation, so a quick `--limit` run never replaces the full test set's rows."""

import json

from vggnet.eval.protocols import write_eval
from vggnet.eval.results import merge


def result(n, protocols, split="test"):
    rows = {p: {"top1_error": 0.1 * i, "top5_error": 0.0, "n": n, "scales": [32], "seconds": 1.0}
            for i, p in enumerate(protocols)}
    return {"split": split, "n": n, "protocols": rows, "analysis_protocol": protocols[0], "confusion": [[n]]}


def test_a_smaller_evaluation_adds_entries_and_keeps_the_full_one(tmp_path):
    path = tmp_path / "eval.json"
    write_eval(result(10000, ["centre", "dense"]), path)
    write_eval(result(500, ["centre"]), path)
    data = json.loads(path.read_text())
    assert data["n"] == 10000 and set(data["protocols"]) == {"centre", "dense"}
    assert data["protocols"]["centre"]["n"] == 10000 and data["confusion"] == [[10000]]
    assert sorted((e["protocol"], e["images"]) for e in data["entries"]) == [
        ("centre", 500), ("centre", 10000), ("dense", 10000)]
    assert all(e["date"] for e in data["entries"])


def test_same_images_other_protocols_are_kept_and_a_rerun_replaces_its_entry():
    first = merge(None, result(64, ["centre"]), date="d1")
    second = merge(first, result(64, ["dense", "multi_scale"]), date="d2")
    assert set(second["protocols"]) == {"centre", "dense", "multi_scale"}
    third = merge(second, result(64, ["centre"]), date="d3")
    centre = [e for e in third["entries"] if e["protocol"] == "centre"]
    assert len(centre) == 1 and centre[0]["date"] == "d3" and len(third["entries"]) == 3


def test_a_validation_run_does_not_replace_the_test_view():
    data = merge(merge(None, result(64, ["centre"])), result(1000, ["centre"], split="val"))
    assert data["split"] == "test" and len(data["entries"]) == 2


def test_a_damaged_eval_json_is_kept_aside_not_silently_replaced(tmp_path, capsys):
    path = tmp_path / "eval.json"
    path.write_bytes(b"\xff{half a file")
    write_eval(result(64, ["centre"]), path)
    assert (tmp_path / "eval.json.damaged").read_bytes() == b"\xff{half a file"
    assert json.loads(path.read_text())["n"] == 64
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "eval.json was damaged" in err and "eval.json.damaged" in err


def test_eval_json_that_is_a_folder_is_one_line(tmp_path):
    import pytest

    from vggnet.errors import ConfigError

    (tmp_path / "eval.json").mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        write_eval(result(64, ["centre"]), tmp_path / "eval.json")
