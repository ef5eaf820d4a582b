"""Key files with two keys, the rotation steps, key rings, and ``ganglion keygen --rotate``."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganglion.cli.cmd_keygen import keygen
from ganglion.errors import ConfigError, KeyFileError
from ganglion.wire import (
    KeyRing,
    as_keyring,
    generate_key_file,
    key_id,
    load_key,
    load_keyring,
    read_keys,
    retire_key_file,
    rotate_key_file,
    switch_key_file,
)
from ganglion.wire import keys as keys_module

A = bytes(range(32))
B = bytes(range(50, 82))


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def test_single_key_files_stay_valid(tmp_path: Path) -> None:
    assert read_keys(write(tmp_path / "raw", A)) == (A,)
    assert read_keys(write(tmp_path / "hex", A.hex().encode() + b"\n")) == (A,)
    assert load_key(tmp_path / "raw") == A


def test_two_keys_one_per_line_the_first_sending(tmp_path: Path) -> None:
    path = write(tmp_path / "k", b"# rotating\n" + B.hex().encode() + b"\n\n" + A.hex().encode())
    ring = load_keyring(path)
    assert ring is not None and ring.keys == (B, A) and ring.sending == B
    assert ring.ids == (key_id(B), key_id(A)) and ring.encrypt
    assert load_key(path) == B


@pytest.mark.parametrize("content", [
    (A.hex() + "\n" + B.hex() + "\n" + bytes(32).hex()).encode(),  # three keys
    (A.hex() + "\n" + A.hex()).encode(),  # the same key twice
    (A.hex() + "\nnot hex\n").encode(),
])
def test_bad_key_files_are_refused(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(KeyFileError):
        load_keyring(write(tmp_path / "k", content))


def test_environment_key_may_list_two_keys() -> None:
    ring = load_keyring(env={"GANGLION_KEY": f"{B.hex()},{A.hex()}"})
    assert ring is not None and ring.keys == (B, A)
    with pytest.raises(KeyFileError):
        load_keyring(env={"GANGLION_KEY": f"{A.hex()},{B.hex()},{A.hex()}"})


def test_the_three_rotation_steps(tmp_path: Path) -> None:
    path = generate_key_file(tmp_path / "net.key")
    (old,) = read_keys(path)
    new_id = rotate_key_file(path)
    keys = read_keys(path)
    assert keys[0] == old and key_id(keys[1]) == new_id  # accepted, not yet sending
    with pytest.raises(KeyFileError, match="under way"):
        rotate_key_file(path)
    assert switch_key_file(path) == new_id
    assert read_keys(path) == (keys[1], old)  # sending with the new, old still accepted
    assert retire_key_file(path) == new_id
    assert read_keys(path) == (keys[1],)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyFileError):
        retire_key_file(path)
    with pytest.raises(KeyFileError):
        switch_key_file(path)


def test_keygen_rotate_switch_retire(tmp_path: Path) -> None:
    path = tmp_path / "net.key"
    runner = CliRunner()
    assert runner.invoke(keygen, [str(path)]).exit_code == 0
    (old,) = read_keys(path)
    result = runner.invoke(keygen, ["--rotate", str(path)])
    assert result.exit_code == 0, result.output
    assert "--switch" in result.output
    new = read_keys(path)[1]
    assert runner.invoke(keygen, ["--switch", str(path)]).exit_code == 0
    assert read_keys(path) == (new, old)
    assert runner.invoke(keygen, ["--retire", str(path)]).exit_code == 0
    assert read_keys(path) == (new,)
    result = runner.invoke(keygen, ["--retire", str(path)])
    assert result.exit_code != 0 and "one key" in result.output


def test_rings_hold_one_or_two_distinct_keys() -> None:
    with pytest.raises(ConfigError):
        KeyRing([])
    with pytest.raises(ConfigError):
        KeyRing([A, B, bytes(32)])
    with pytest.raises(ConfigError):
        KeyRing([A, A])
    with pytest.raises(ConfigError):
        KeyRing([A[:31]])
    ring = as_keyring(A)
    assert ring is not None and ring.encrypt and ring.keys == (A,)
    assert as_keyring(A, encrypt=False) == KeyRing([A], encrypt=False)
    assert as_keyring(None) is None
    assert A.hex() not in repr(KeyRing([A, B]))


def test_encryption_without_cryptography_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "aead_available", lambda: False)
    with pytest.raises(ConfigError, match=r"ganglion-net\[secure\]"):
        KeyRing([A]).require_aead()
    KeyRing([A], encrypt=False)  # MAC-only needs nothing more
