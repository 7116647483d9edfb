"""Fixtures for the data tests; the layout writers are in data_layouts.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from vggnet.data import formats


@pytest.fixture
def no_system_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Hide $VGGNET_DATA, the system copies and the download cache."""
    monkeypatch.delenv(formats.ENV_VAR, raising=False)
    monkeypatch.setattr(formats, "SYSTEM_DIRS", {})
    monkeypatch.setattr(formats, "CACHE_DIR", tmp_path / "cache")
