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
    "code": lambda p: torch.save({"model": _Exploit()}, p),
    "a directory": lambda p: os.remove(p) or os.mkdir(p),
}
MESSAGES = {"empty": "empty", "truncated": "not a complete torch file", "garbage": "not a plain tensor file",
            "bit flipped": "damaged|cannot be read", "a tensor": "holds a Tensor", "a list": "holds a list",
            "no optimizer": "lacks optimizer", "wrong shapes": r"does not fit this run \(size mismatch for weight",
            "code": r"names Python code \(posix.system\)", "a directory": None}


class _Exploit:
    def __reduce__(self):
        return os.system, ("touch pwned-by-checkpoint",)


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_last_falls_back_to_previous(tmp_path, case, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
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
    if MESSAGES[case] is None:  # not a file: skipped as absent (the run directory check refuses it first)
        assert err == ""
        return
    assert err.count("\n") == 1 and "resumed from the previous checkpoint" in err
    assert __import__("re").search(MESSAGES[case], err), err
    assert "PyTorch 2.6" not in err and not (tmp_path / "pwned-by-checkpoint").exists()


@pytest.mark.parametrize("case", sorted(set(DAMAGE) - {"a directory"}))
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


def test_a_checkpoint_without_checksum_is_loaded_with_a_note(tmp_path, capsys):
    model = nn.Linear(4, 2)
    torch.save(good_state(model, 4), tmp_path / "last.pt")  # as an older vggnet wrote it
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "carries no checksum" in err and "unverified" in err


def test_every_flipped_byte_is_caught_or_harmless(tmp_path):
    """A flipped byte anywhere in last.pt: either load refuses it (one line), or what it loads is
    exactly what was saved (the byte was zip padding or a header field torch does not read)."""
    import random

    model = nn.Linear(8, 4)
    checkpoint.save(good_state(model, 3), tmp_path / "good.pt")
    good = tmp_path / "good.pt"
    expected = checkpoint.digest(checkpoint.load(good))
    data = good.read_bytes()
    caught = 0
    for at in random.Random(19).sample(range(len(data)), 60):
        damaged = bytearray(data)
        damaged[at] ^= 0x5A
        (tmp_path / "last.pt").write_bytes(bytes(damaged))
        try:
            state = checkpoint.load(tmp_path / "last.pt")
        except TrainingError as exc:
            assert "\n" not in str(exc)
            caught += 1
            continue
        assert checkpoint.digest(state) == expected, f"byte {at}: loaded a different state"
    assert caught > 10


def test_any_random_bytes_are_refused_with_the_same_line(tmp_path):
    # random bytes fail inside torch's unpickler in several ways (IndexError, KeyError, UnicodeDecodeError
    # for about 1 in 10 seeds); each is the same one line
    import random

    for seed in range(60):
        (tmp_path / "last.pt").write_bytes(random.Random(seed).randbytes(4096))
        with pytest.raises(TrainingError, match="not a plain tensor file"):
            checkpoint.load(tmp_path / "last.pt")
