"""The report opens in a real browser: headless Chromium (Debian's `chromium` package) loads it
from file:// with networking disabled, and its DOM has the plots and the tables."""

import shutil
import subprocess
import tempfile

import pytest

from vggnet.experiments.report import render_sweep
from vggnet.report.run import render_run
from vggnet.experiments.spec import load_spec
from vggnet.experiments.sweep import run_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--proxy-server=127.0.0.1:9", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)


def test_run_report_renders_in_chromium(run_dir):
    page = render_run(run_dir)
    dom = chromium("--dump-dom", page.as_uri()).stdout
    assert dom.count("<img") == 2 and dom.count('src="data:image/png;base64,') == 2
    for cls in ("summary", "protocols", "per-class", "events"):
        assert f'<table class="{cls}">' in dom


def test_sweep_report_renders_in_chromium(tmp_path, fake_train):
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(f"base: {{data: {{name: synthetic, num_classes: 4}}}}\n"
                         f"grid: {{model.name: [A, E], train.batch_size: [8, 64]}}\nseeds: [0, 1]\n"
                         f"out: {tmp_path / 'sweep'}\nreport: {{paper: true}}\n")
    spec = load_spec(spec_path)
    run_sweep(spec, command=fake_train, log=lambda _: None)
    dom = chromium("--dump-dom", render_sweep(spec.out).as_uri()).stdout
    assert 'alt="accuracy box plot"' in dom and 'alt="validation curves"' in dom
    assert 'alt="confusion matrices"' in dom
    assert '<table class="cells">' in dom and '<table class="paper">' in dom
    assert dom.count("<tr>") >= 1 + 4  # header + one row per cell
