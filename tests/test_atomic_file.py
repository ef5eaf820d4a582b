"""ganglion._atomic_file: the one writer the key files use (generating, rotating, joining)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ganglion._atomic_file import replace_atomically, write_temp_beside


def test_replace_writes_0600_fsyncs_the_file_renames_then_fsyncs_the_directory(
        tmp_path: Path, disk_order: list[str]) -> None:
    target = tmp_path / "network.key"
    target.write_bytes(b"old")
    target.chmod(0o644)
    replace_atomically(target, b"new")
    assert disk_order == ["fsync-file", "rename", "fsync-dir"]
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["network.key"]


def test_a_failed_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "keys"
    target.mkdir()  # a file cannot be renamed over a directory
    (target / "inside").write_bytes(b"x")
    with pytest.raises(OSError):
        replace_atomically(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys"]
    assert (target / "inside").read_bytes() == b"x"


def test_the_temporary_is_private_hidden_and_beside_the_target(tmp_path: Path) -> None:
    tmp = write_temp_beside(tmp_path / "network.key", b"abc")
    try:
        assert tmp.parent == tmp_path and tmp.name.startswith(".network.key.")
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        assert tmp.read_bytes() == b"abc"
    finally:
        tmp.unlink()


def test_an_unwritable_directory_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_temp_beside(tmp_path / "missing" / "network.key", b"abc")
    assert list(tmp_path.iterdir()) == []
