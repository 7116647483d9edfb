"""Damaged checkpoints: each case is one line, and the previous good checkpoint is used."""

import os

import pytest
import torch
from torch import nn

from vggnet.errors import TrainingError
from vggnet.train import checkpoint


def good_state(model, step):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 0, "batch": step, "step": step,
            "rng": checkpoint.rng_state(), "metrics_lines": step}


def flip_middle_bit(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "bit flipped": flip_middle_bit,
    "a tensor": lambda p: torch.save(torch.zeros(3), p),
    "a list": lambda p: torch.save([1, 2], p),
    "no optimizer": lambda p: torch.save({k: v for k, v in torch.load(p, weights_only=True).items()
                                          if k != "optimizer"}, p),
    "wrong shapes": lambda p: checkpoint.save(good_state(nn.Linear(3, 2), 9), p) or os.remove(p.with_name("prev.pt")),
}
MESSAGES = {"empty": "empty", "truncated": "cannot be read", "garbage": "cannot be read", "bit flipped":
            "damaged|cannot be read", "a tensor": "holds a Tensor", "a list": "holds a list",
            "no optimizer": "lacks optimizer", "wrong shapes": "does not fit this run"}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_last_falls_back_to_previous(tmp_path, case, capsys):
    model = nn.Linear(4, 2)
    folder = tmp_path / "checkpoints"
    checkpoint.save(good_state(model, 1), folder / "last.pt")
    checkpoint.save(good_state(model, 2), folder / "last.pt")  # the first becomes prev.pt
    assert checkpoint.load(folder / "prev.pt")["step"] == 1
    if case == "wrong shapes":
        os.replace(folder / "prev.pt", tmp_path / "keep.pt")
        DAMAGE[case](folder / "last.pt")
        os.replace(tmp_path / "keep.pt", folder / "prev.pt")
    else:
        DAMAGE[case](folder / "last.pt")

    state = checkpoint.load_latest(folder, lambda s: model.load_state_dict(s["model"]))
    assert state["step"] == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resumed from the previous checkpoint" in err
    assert __import__("re").search(MESSAGES[case], err), err


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_no_good_checkpoint_is_one_error(tmp_path, case):
    model = nn.Linear(4, 2)
    folder = tmp_path / "checkpoints"
    checkpoint.save(good_state(model, 1), folder / "last.pt")
    DAMAGE[case](folder / "last.pt")
    with pytest.raises(TrainingError, match="--overwrite") as info:
        checkpoint.load_latest(folder, lambda s: model.load_state_dict(s["model"]))
    assert "\n" not in str(info.value)


def test_a_good_checkpoint_round_trips_and_verifies(tmp_path):
    model = nn.Linear(4, 2)
    checkpoint.save(good_state(model, 3), tmp_path / "last.pt")
    state = checkpoint.load(tmp_path / "last.pt")
    assert state["checksum"] == checkpoint.digest(state) and state["step"] == 3
    assert checkpoint.load_latest(tmp_path / "none", lambda s: None) is None
