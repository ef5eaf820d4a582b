"""Fixtures of the invite/join tests: a private state directory and a clean key environment."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """XDG_STATE_HOME in tmp_path and no GANGLION_KEY*/IFACE: the default key file is ours."""
    home = tmp_path / "xdg-state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    for name in ("GANGLION_KEY", "GANGLION_KEY_FILE", "GANGLION_IFACE"):
        monkeypatch.delenv(name, raising=False)
    return home
