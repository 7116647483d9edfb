import json
import re

import pytest

from vggnet import config
from vggnet.report.run import read_examples

# A run small enough for the test suite: a width-1/8 VGG-A on 32x32 synthetic images.
TINY = [
    "data.name=synthetic", "data.num_train=320", "data.num_test=64", "data.num_classes=4",
    "model.width=0.125", "model.dropout=0.0", "train.batch_size=32", "train.epochs=2",
    "train.progress=false", "train.lr=0.02", "train.warmup_epochs=0.5",
]


@pytest.fixture
def tiny_cfg():
    def make(*overrides: str) -> config.RunConfig:
        return config.load(None, [*TINY, *overrides])

    return make


@pytest.fixture
def tiny_sets() -> list[str]:
    return list(TINY)


@pytest.fixture(scope="module")
def tiny_sets_module() -> list[str]:
    """TINY for module-scoped fixtures (one run shared by a file's tests)."""
    return list(TINY)


def _check_run_outputs(run, out):
    """The epoch lines printed by a 2-epoch fit and what it left for the report."""
    lines = [ln for ln in out.splitlines() if ln.startswith("epoch ")]
    assert len(lines) == 2 and re.fullmatch(r"epoch 2/2  train loss \d+\.\d{4}  val top-1 error \d+\.\d\d%  "
                                            r"lr \S+  \d+\.\d min", lines[1]), lines
    arrays, classes = read_examples(run)
    assert len(classes) == 4
    found = [k for k in ("mistakes", "correct") if k in arrays]
    assert found  # a 2-epoch net on 64 test images gets some right or some wrong
    for k in found:
        images = arrays[k]
        assert images.dtype.name == "uint8" and images.shape[1:] == (3, 32, 32)
        assert len(arrays[f"{k}_true"]) == len(images) == len(arrays[f"{k}_prob"])
        assert ((arrays[f"{k}_true"] == arrays[f"{k}_pred"]) == (k == "correct")).all()
        assert (arrays[f"{k}_prob"][:-1] >= arrays[f"{k}_prob"][1:]).all() or k == "correct"
    if "mistakes" in arrays:
        assert len(arrays["mistakes"]) <= 16
    if "correct" in arrays:
        counts = {c: int((arrays["correct_true"] == c).sum()) for c in set(arrays["correct_true"].tolist())}
        assert max(counts.values()) <= 3
    info = json.loads((run / "run.json").read_text())
    assert info["resumed"] is False and info["versions"]["torch"] and info["finished_at"].endswith("Z") and info["finished"] is True
    html = (run / "report.html").read_text()
    assert ("most confident mistakes" in html) or ("correct examples per class" in html)
    assert "resumed from a checkpoint" in html and "training wall time" in html and "best val top-1 error %" in html


@pytest.fixture
def check_run_outputs():
    """check(run_dir, captured stdout): the epoch lines, examples.safetensors, run.json, report."""
    return _check_run_outputs
