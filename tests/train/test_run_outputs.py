"""What a finished run leaves for people: an epoch line per epoch, example images
(examples.safetensors), run.json (date, versions, resumed) and a report showing them. Checked
on test_trainer.py's run (conftest.check_run_outputs: one tiny fit serves both), plus the
progress-bar path here."""


from types import SimpleNamespace

from vggnet.train.trainer import Trainer


def test_epoch_line_goes_above_the_progress_bar(monkeypatch, capsys):
    import tqdm

    written = []
    monkeypatch.setattr(tqdm.tqdm, "write", staticmethod(lambda line, *a, **k: written.append(line)))
    record = {"epoch": 3, "train_loss": 0.51234, "val_top1": 0.8766, "lr": 0.01, "wall_s": 150.0}
    for progress in (True, False):
        fake = SimpleNamespace(cfg=SimpleNamespace(train=SimpleNamespace(epochs=15, progress=progress)))
        Trainer._print_epoch(fake, record)
    line = "epoch 3/15  train loss 0.5123  val top-1 error 12.34%  lr 0.01  2.5 min"
    assert written == [line] and capsys.readouterr().out == line + "\n"
