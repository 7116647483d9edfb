"""Monitor: constructed runs that must trigger each detector, and a healthy run that must not."""

from __future__ import annotations

import torch
from torch import nn

from vggnet.model.vgg import build_model
from vggnet.train.health import Monitor

C = 10


def _data(n: int, *, shuffled: bool = False, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable 32 px images: a per-class mean pattern plus noise (labels shuffled on request)."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(C, 3, 32, 32, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, C, (n,), generator=g)
    x = patterns[y] + 0.5 * torch.randn(n, 3, 32, 32, generator=g)
    if shuffled:
        y = torch.randint(0, C, (n,), generator=g)
    return x, y


def _model() -> nn.Module:
    return build_model("A", num_classes=C, batch_norm=True, head="gap", width=0.125, init="kaiming", seed=0)


def _train(model, monitor, x, y, *, steps: int, lr=0.05, batch: int = 32, start: int = 0) -> list[float]:
    """A hand-written loop with the monitor's hooks where the trainer puts them; returns the losses."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    model.train()
    for step in range(start, start + steps):
        for group in opt.param_groups:
            group["lr"] = lr(step) if callable(lr) else lr
        i = torch.arange(step * batch, (step + 1) * batch) % len(y)
        monitor.before_step(step)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        monitor.after_backward(step)
        opt.step()
        monitor.after_step(step, loss.detach())
        losses.append(loss.item())
    return losses


def _validate(model, monitor, epoch, step, x, y, history):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    model.train()
    return monitor.on_validation(epoch, step, logits, y, history)


def test_healthy_run_raises_no_alarm():
    model, records = _model(), []
    monitor = Monitor(model, num_classes=C, every=5, log=records.append)
    x, y = _data(256)
    vx, vy = _data(200, seed=1)
    history = []
    for epoch in range(3):
        history.append(sum(_train(model, monitor, x, y, steps=8, batch=16, start=8 * epoch)) / 8)
        _validate(model, monitor, epoch, 8 * (epoch + 1), vx, vy, history)
    assert monitor.events == []
    samples = [r for r in records if "health" in r]
    assert [r["step"] for r in samples] == [0, 5, 10, 15, 20]
    first = samples[0]["health"]["features.0"]
    assert set(first) == {"dead", "act_std", "grad_norm", "update_ratio"}
    assert 0 < first["update_ratio"] < 0.1 and first["grad_norm"] > 0 and first["dead"] < 0.5
    assert history[-1] < history[0]


def test_learning_rate_blow_up_is_a_loss_cliff(capsys):
    model, records = _model(), []
    monitor = Monitor(model, num_classes=C, every=50, log=records.append)
    x, y = _data(256)
    losses = _train(model, monitor, x, y, steps=16, batch=16, lr=lambda s: 0.02 if s < 12 else 500.0)
    events = monitor.after_step(16, losses[-1])  # a float loss is checked at once
    cliffs = [e for e in monitor.events if e["event"] == "loss_cliff"]
    assert len(cliffs) == 1 and cliffs[0]["step"] >= 12, (losses, monitor.events)
    assert cliffs[0] in records and "lower train.lr" in cliffs[0]["fix"]
    assert events == [] or events[0]["event"] == "loss_cliff"
    assert capsys.readouterr().err.count("loss cliff") == 1


def test_nonfinite_loss_is_a_cliff_and_printed_once(capsys):
    monitor = Monitor(nn.Linear(2, 2), num_classes=C, every=0, log=lambda r: None)
    for step in range(12):
        monitor.after_step(step, 2.0)
    monitor.after_step(12, float("nan"))
    for step in range(13, 30):
        monitor.after_step(step, 2.0)
    monitor.after_step(30, 100.0)
    assert [e["step"] for e in monitor.events] == [12, 30]
    assert capsys.readouterr().err.count("[health]") == 2  # one event kind: message + fix lines, once


def test_noise_near_zero_loss_is_not_a_cliff():
    monitor = Monitor(nn.Linear(2, 2), num_classes=C, every=0, log=lambda r: None)
    for step in range(100):
        monitor.after_step(step, 0.02 if step % 7 else 0.15)  # 7x the average, but tiny
    assert monitor.events == []


def test_shuffled_labels_plateau_at_chance():
    model = _model()
    monitor = Monitor(model, num_classes=C, every=0, log=lambda r: None)
    x, y = _data(128, shuffled=True)
    vx, vy = _data(400, shuffled=True, seed=1)
    history = []
    for epoch in range(3):
        history.append(sum(_train(model, monitor, x, y, steps=8, batch=16, start=8 * epoch, lr=0.02)) / 8)
        _validate(model, monitor, epoch, 8 * (epoch + 1), vx, vy, history)
    kinds = [e["event"] for e in monitor.events]
    assert kinds.count("plateau_at_chance") == 1, monitor.events
    event = next(e for e in monitor.events if e["event"] == "plateau_at_chance")
    assert event["epoch"] == 1 and event["accuracy"] < 0.2


def test_collapse_onto_one_class():
    model = _model()
    with torch.no_grad():
        model.classifier[-1].bias[3] = 50.0
    monitor = Monitor(model, num_classes=C, every=0, log=lambda r: None)
    vx, vy = _data(200, seed=1)
    assert _validate(model, monitor, 0, 0, vx, vy, [2.3]) == []  # once may be BN statistics settling
    events = _validate(model, monitor, 1, 10, vx, vy, [2.3, 2.2])
    assert [e["event"] for e in events] == ["collapse", "plateau_at_chance"]
    assert events[0]["top_class"] == 3 and events[0]["top_share"] == 1.0
    # a balanced prediction is not a collapse, even when it is wrong
    half_right = torch.where(torch.arange(len(vy)) % 2 == 0, vy, (vy + 1) % C)
    balanced = Monitor(model, num_classes=C)
    assert [balanced.on_validation(e, e, half_right, vy, [2.3]) for e in range(3)] == [[], [], []]


def test_dead_relus_on_sampled_steps():
    model = _model()
    with torch.no_grad():
        model.features[1].bias.fill_(-10.0)  # BN shift: the first block never fires
    monitor = Monitor(model, num_classes=C, every=2, log=lambda r: None)
    x, y = _data(16)
    _train(model, monitor, x, y, steps=1, batch=8)
    assert [e["event"] for e in monitor.events] == ["dead_relus"]
    assert monitor.events[0]["layers"]["features.0"] == 1.0


def test_large_updates_after_warm_up():
    model = _model()
    monitor = Monitor(model, num_classes=C, every=12, log=lambda r: None)
    x, y = _data(64)
    _train(model, monitor, x, y, steps=13, batch=4, lr=lambda s: 200.0 if s == 12 else 0.0)
    assert {e["event"] for e in monitor.events} >= {"large_updates"}
    assert all(e["step"] == 12 for e in monitor.events)


def test_unsampled_steps_attach_nothing():
    model = _model()
    monitor = Monitor(model, num_classes=C, every=100, log=lambda r: None)
    monitor.before_step(1)
    assert all(not m._forward_hooks for m in model.modules())
    monitor.before_step(100)
    assert any(m._forward_hooks for m in model.modules())
    monitor.after_backward(100)
    assert all(not m._forward_hooks for m in model.modules())
