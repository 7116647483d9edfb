"""The CLI's stderr: vggnet's warnings one line each at once, other libraries' warnings held and
dropped when the command ends in a vggnet error (whose one line is then all there is)."""

import warnings

import pytest

from vggnet import cli
from vggnet.errors import ConfigError, VGGNetWarning


def library_warning(text):
    warnings.warn_explicit(text, UserWarning, filename="/site-packages/torch/serialization.py", lineno=1)


@pytest.fixture
def verb(monkeypatch):
    """`vggnet train` whose run is replaced by ``verb.body``."""
    import vggnet.cli.train as train

    box = {}
    monkeypatch.setattr(train, "run", lambda args: box["body"]())
    return box


def test_library_warnings_are_not_printed_before_the_error_line(verb, capsys):
    def body():
        library_warning("Weights only load failed. In PyTorch 2.6, we changed the default value of\nthe "
                        "`weights_only` argument")
        raise ConfigError("the one line")

    verb["body"] = body
    assert cli.main(["train"]) == 2
    assert capsys.readouterr().err == "vggnet train: error: the one line\n"


def test_vggnet_warnings_are_one_line_at_once_library_ones_one_line_at_the_end(verb, capsys):
    def body():
        warnings.simplefilter("always")
        library_warning("a long\nlibrary message")
        library_warning("a long\nlibrary message")  # said once
        warnings.warn("skipped 2 unreadable image files (...)", VGGNetWarning, stacklevel=1)
        print("working")
        return 0

    verb["body"] = body
    assert cli.main(["train"]) == 0
    out, err = capsys.readouterr()
    assert out == "working\n"
    assert err.splitlines() == ["vggnet train: warning: skipped 2 unreadable image files (...)",
                                "vggnet train: note: torch warned: a long library message"]
