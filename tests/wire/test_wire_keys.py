"""Network key: key file creation (mode 0600, no overwrite) and the three ways to load a key."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ganglion.errors import KeyFileError
from ganglion.wire import KEY_SIZE, generate_key_file, load_key, read_key_file


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_key_file_has_32_random_bytes_and_mode_0600(tmp_path: Path) -> None:
    a = generate_key_file(tmp_path / "a.key")
    b = generate_key_file(tmp_path / "b.key")
    assert mode_of(a) == 0o600
    assert len(a.read_bytes()) == KEY_SIZE
    assert a.read_bytes() != b.read_bytes()
    assert load_key(a, env={}) == a.read_bytes()


def test_generated_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = generate_key_file(tmp_path / "k")
        forced = generate_key_file(tmp_path / "k", force=True)
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600 and mode_of(forced) == 0o600


def test_existing_key_file_is_not_overwritten_without_force(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k")
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match=r"already exists.*force"):
        generate_key_file(path)
    assert path.read_bytes() == before
    generate_key_file(path, force=True)
    assert path.read_bytes() != before
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # no temp file left


def test_missing_parent_directories_are_created_private(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "etc" / "ganglion" / "network.key")
    assert path.exists() and mode_of(path.parent) == 0o700


def test_unwritable_location_is_a_key_file_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KeyFileError, match="cannot write"):
        generate_key_file(blocker / "k")


def test_hex_key_file_is_accepted(tmp_path: Path) -> None:
    key = bytes(range(32))
    path = tmp_path / "hex.key"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    assert read_key_file(path) == key


@pytest.mark.parametrize("content", [b"", b"x" * 31, b"x" * 33, b"zz" * 32, b"ab" * 33])
def test_key_file_of_wrong_size_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="must hold 32 bytes or 64 hex"):
        load_key(path, env={})


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620])
def test_key_file_open_to_others_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = generate_key_file(tmp_path / "k")
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"mode {mode:04o}.*chmod 600"):
        load_key(path, env={})


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k")
    path.chmod(0o400)
    assert len(read_key_file(path)) == KEY_SIZE


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"does not exist.*ganglion keygen"):
        load_key(tmp_path / "nope", env={})


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(d, env={})


def test_no_key_configured_is_none() -> None:
    assert load_key(None, env={}) is None
    assert load_key(env={"GANGLION_KEY": "", "GANGLION_KEY_FILE": ""}) is None


def test_env_key_file_is_used(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k")
    assert load_key(env={"GANGLION_KEY_FILE": str(path)}) == path.read_bytes()


def test_env_hex_key_is_used() -> None:
    key = bytes(range(100, 132))
    assert load_key(env={"GANGLION_KEY": key.hex()}) == key
    assert load_key(env={"GANGLION_KEY": f"  {key.hex().upper()}\n"}) == key


@pytest.mark.parametrize("value", ["abcd", "g" * 64, "00" * 33])
def test_bad_env_hex_key_is_refused(value: str) -> None:
    with pytest.raises(KeyFileError, match="GANGLION_KEY must be 64 hexadecimal"):
        load_key(env={"GANGLION_KEY": value})


def test_explicit_path_wins_over_environment(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k")
    env = {"GANGLION_KEY": "00" * 32, "GANGLION_KEY_FILE": str(tmp_path / "missing")}
    assert load_key(path, env=env) == path.read_bytes()


def test_both_environment_variables_are_ambiguous(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "k")
    with pytest.raises(KeyFileError, match="set only one"):
        load_key(env={"GANGLION_KEY": "00" * 32, "GANGLION_KEY_FILE": str(path)})


def test_default_environment_is_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANGLION_KEY_FILE", raising=False)
    monkeypatch.setenv("GANGLION_KEY", "11" * 32)
    assert load_key() == b"\x11" * 32
