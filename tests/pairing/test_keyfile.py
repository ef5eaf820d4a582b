"""The key file a join writes: where, with which mode, and never over another key by accident."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click
import pytest
from pairing_support import key_bytes, write_key

from ganglion.cli._options import resolve_network
from ganglion.errors import KeyFileError
from ganglion.pairing.keyfile import (
    DEFAULT_KEY_NAME,
    Installed,
    default_key_file,
    implicit_key_file,
    install_key_file,
    join_target,
)

KEY = key_bytes(1)


def _sending(key: object) -> object:
    """The sending key of resolved settings (a key ring, or bytes before rotation existed)."""
    return getattr(key, "sending", key)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_default_key_file_is_in_the_default_state_directory(state_home: Path) -> None:
    assert default_key_file() == state_home / "ganglion" / DEFAULT_KEY_NAME


def test_install_writes_the_bytes_with_mode_0600_in_a_0700_directory(tmp_path: Path) -> None:
    target = tmp_path / "fresh" / "network.key"
    assert install_key_file(target, KEY) is Installed.WRITTEN
    assert target.read_bytes() == KEY
    assert _mode(target) == 0o600 and _mode(target.parent) == 0o700
    assert [p.name for p in target.parent.iterdir()] == ["network.key"]  # no temp file left


def test_installing_the_same_key_again_changes_nothing(tmp_path: Path) -> None:
    target = write_key(tmp_path / "k", KEY)
    before = target.stat().st_ino
    assert install_key_file(target, KEY) is Installed.UNCHANGED
    assert target.stat().st_ino == before


def test_the_same_key_spelt_another_way_is_not_another_key(tmp_path: Path) -> None:
    target = write_key(tmp_path / "k", KEY)  # raw bytes
    assert install_key_file(target, KEY.hex().encode() + b"\n") is Installed.UNCHANGED
    assert target.read_bytes() == KEY
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_a_rotation_file_of_two_keys_is_installed_whole(tmp_path: Path) -> None:
    text = f"{key_bytes(5).hex()}\n{KEY.hex()}\n".encode()
    install_key_file(tmp_path / "k", text)
    from ganglion.wire.keys import read_keys

    assert read_keys(tmp_path / "k") == (key_bytes(5), KEY)


def test_another_key_is_kept_unless_forced(tmp_path: Path) -> None:
    target = write_key(tmp_path / "k", key_bytes(2))
    with pytest.raises(KeyFileError, match="already holds another network key; pass --force"):
        install_key_file(target, KEY)
    assert target.read_bytes() == key_bytes(2)
    assert install_key_file(target, KEY, force=True) is Installed.REPLACED
    assert target.read_bytes() == KEY and _mode(target) == 0o600


def test_what_does_not_load_as_a_key_never_takes_the_name(tmp_path: Path) -> None:
    target = tmp_path / "k"
    with pytest.raises(KeyFileError, match="cannot use"):
        install_key_file(target, b"not a key")
    assert list(tmp_path.iterdir()) == []


def test_a_hex_key_file_is_delivered_as_it_was(tmp_path: Path) -> None:
    text = KEY.hex().encode() + b"\n"
    target = tmp_path / "k"
    install_key_file(target, text)
    assert target.read_bytes() == text


def test_a_directory_in_the_way_is_reported(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    with pytest.raises(KeyFileError, match="is a directory"):
        install_key_file(tmp_path / "k", KEY)


def test_join_writes_to_the_flag_then_the_environment_then_the_default(state_home: Path) -> None:
    assert join_target(Path("/x/flag.key"), {"GANGLION_KEY_FILE": "/x/env.key"}) == Path(
        "/x/flag.key")
    assert join_target(None, {"GANGLION_KEY_FILE": "/x/env.key"}) == Path("/x/env.key")
    assert join_target(None, {}) == default_key_file()


def test_the_default_key_file_counts_only_when_no_key_is_named_and_it_exists(
        state_home: Path) -> None:
    assert implicit_key_file({}) is None
    install_key_file(default_key_file(), KEY)
    assert implicit_key_file({}) == default_key_file()
    assert implicit_key_file({"GANGLION_KEY_FILE": "/x"}) is None
    assert implicit_key_file({"GANGLION_KEY": "ab" * 32}) is None


def test_every_networked_command_uses_the_joined_key_by_default(state_home: Path) -> None:
    assert resolve_network("127.0.0.1", 47800, None, 1).key is None  # zero-config: keyless
    install_key_file(default_key_file(), KEY)
    assert _sending(resolve_network("127.0.0.1", 47800, None, 1).key) == KEY


def test_a_named_key_wins_over_the_joined_one(state_home: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    install_key_file(default_key_file(), KEY)
    other = write_key(tmp_path / "other.key", key_bytes(2))
    assert _sending(resolve_network("127.0.0.1", 47800, other, 1).key) == key_bytes(2)
    monkeypatch.setenv("GANGLION_KEY", key_bytes(3).hex())
    assert _sending(resolve_network("127.0.0.1", 47800, None, 1).key) == key_bytes(3)


def test_a_joined_key_file_with_a_loose_mode_is_refused_not_ignored(state_home: Path) -> None:
    install_key_file(default_key_file(), KEY)
    os.chmod(default_key_file(), 0o644)
    with pytest.raises(click.ClickException, match="chmod 600"):
        resolve_network("127.0.0.1", 47800, None, 1)


def test_invite_shares_the_key_file_as_it_is_both_keys_of_a_rotation(tmp_path: Path,
                                                                     state_home: Path) -> None:
    from ganglion.cli.cmd_invite import _key_file_bytes

    text = f"# rotating\n{key_bytes(5).hex()}\n{KEY.hex()}\n".encode()
    path = tmp_path / "two.key"
    path.write_bytes(text)
    path.chmod(0o600)
    assert _key_file_bytes(path, {}) == text
    assert _key_file_bytes(None, {"GANGLION_KEY_FILE": str(path)}) == text


def test_invite_turns_a_key_from_the_environment_into_a_key_file(state_home: Path) -> None:
    from ganglion.cli.cmd_invite import _key_file_bytes
    from ganglion.wire.keys import read_keys

    assert _key_file_bytes(None, {"GANGLION_KEY": KEY.hex()}) == KEY
    both = _key_file_bytes(None, {"GANGLION_KEY": f"{key_bytes(5).hex()},{KEY.hex()}"})
    path = state_home / "both.key"
    install_key_file(path, both)
    assert read_keys(path) == (key_bytes(5), KEY)


def test_invite_shares_the_joined_key_by_default_and_refuses_when_there_is_none(
        state_home: Path) -> None:
    from ganglion.cli.cmd_invite import _key_file_bytes

    with pytest.raises(KeyFileError, match="no network key to share"):
        _key_file_bytes(None, {})
    install_key_file(default_key_file(), KEY)
    assert _key_file_bytes(None, {}) == KEY
