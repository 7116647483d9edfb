"""LR schedules: the paper's plateau rule, warm-up, and step-indexing."""

import pytest

from vggnet.config import TrainConfig
from vggnet.train.schedule import PlateauState, lr_at


def test_plateau_divides_by_ten_at_most_three_times():
    cfg = TrainConfig(schedule="plateau", lr=0.01, plateau_patience=1, plateau_max_decreases=3)
    state = PlateauState()
    lrs = []
    for acc in [0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]:
        state.update(acc, cfg)
        lrs.append(lr_at(0, 100, 10, cfg, state))
    assert lrs == pytest.approx([0.01, 0.01, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5])
    assert state.decreases == 3


def test_onecycle_warms_up_then_anneals_to_zero():
    cfg = TrainConfig(schedule="onecycle", lr=1.0, warmup_epochs=1)
    lrs = [lr_at(s, 100, 10, cfg, PlateauState()) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == 0


def test_step_and_cosine():
    step = TrainConfig(schedule="step", lr=1.0, step_size=2)
    assert [lr_at(s, 100, 10, step, PlateauState()) for s in (0, 19, 20, 40)] == pytest.approx([1, 1, 0.1, 0.01])
    cos = TrainConfig(schedule="cosine", lr=1.0, warmup_epochs=0)
    assert lr_at(50, 101, 10, cos, PlateauState()) == pytest.approx(0.5, abs=0.02)
