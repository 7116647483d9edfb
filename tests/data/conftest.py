"""Fixtures for the data tests; the layout writers are in data_layouts.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vggnet.data import formats

# --import-mode=importlib puts no test folder on sys.path; the tests import data_layouts from here.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide $VGGNET_DATA, the system copies and the download cache."""
    monkeypatch.delenv(formats.ENV_VAR, raising=False)
    monkeypatch.setattr(formats, "SYSTEM_DIRS", {})
    monkeypatch.setattr(formats, "CACHE_DIR", tmp_path / "cache")
