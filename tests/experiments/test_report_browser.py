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


def test_run_report_images_decode_in_chromium(run_dir, tmp_path):
    """The example grids (and every other figure) are real images: Chromium decodes each one.
    The report has no JavaScript; a copy with a checking script is what the browser loads."""
    import torch

    from vggnet.eval.examples import write_examples

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 28, 28), generator=g, dtype=torch.uint8)
    write_examples({"mistakes": images[:2], "mistakes_true": torch.tensor([6, 4]),
                    "mistakes_pred": torch.tensor([0, 2]), "mistakes_prob": torch.tensor([0.97, 0.88]),
                    "correct": images[2:], "correct_true": torch.tensor([0, 1, 1]),
                    "correct_pred": torch.tensor([0, 1, 1]), "correct_prob": torch.tensor([0.99, 0.98, 0.9])},
                   ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt"],
                   run_dir / "examples.safetensors")
    html = render_run(run_dir).read_text()
    assert "<script" not in html
    assert 'alt="most confident mistakes"' in html and 'alt="correct examples per class"' in html
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>window.onload=()=>{const i=[...document.images];"
                                  "document.body.setAttribute('data-decoded',i.filter(x=>x.complete&&x.naturalWidth>50)"
                                  ".length+'/'+i.length)}</script></body>"))
    dom = chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri()).stdout
    assert 'data-decoded="4/4"' in dom  # curves, confusion, mistakes, correct examples
