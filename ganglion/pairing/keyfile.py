"""Where a joined node keeps its network key, and writing the key file a join receives.

Theory of operation: ``ganglion join`` writes the key file it receives to
``--key-file``, else to ``GANGLION_KEY_FILE``, else to :func:`default_key_file`
(``network.key`` in the default state directory, ``~/.local/state/ganglion`` on
Linux). Every networked command uses that default file when no key is given
(no ``--key-file``, ``GANGLION_KEY_FILE`` or ``GANGLION_KEY``) and the file
exists (:func:`implicit_key_file`), so a node started after a join uses the key
without a flag. Without that file nothing changes: zero-config stays keyless.

The file is written the way ``ganglion keygen`` writes one: mode 0600, in a
directory created 0700, through a temporary file that is fsynced and checked
with the key loader (:func:`ganglion.wire.keys.read_keys`) before it takes the real
name, so a
crash or a bad delivery never leaves a half-written key. An existing file with
another key is replaced only when asked (``--force``): nodes using the old key
would stop hearing this one.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ganglion._atomic_file import fsync_dir, write_temp_beside
from ganglion.errors import KeyFileError

__all__ = ["DEFAULT_KEY_NAME", "Installed", "default_key_file", "implicit_key_file",
           "install_key_file", "join_target"]

#: File name of the default key file inside the default state directory.
DEFAULT_KEY_NAME: Final = "network.key"

_ENV_KEY_FILE: Final = "GANGLION_KEY_FILE"
_ENV_KEY: Final = "GANGLION_KEY"


class Installed(enum.Enum):
    """What :func:`install_key_file` did."""

    WRITTEN = "written"  # a new file
    REPLACED = "replaced"  # another key was there; force replaced it
    UNCHANGED = "unchanged"  # the file already held exactly these bytes


def default_key_file() -> Path:
    """The key file every command reads when no key is configured, if it exists.

    Returns:
        ``<default state dir>/network.key`` (``~/.local/state/ganglion/network.key``).
    """
    from ganglion.state import default_state_dir

    return default_state_dir() / DEFAULT_KEY_NAME


def implicit_key_file(env: Mapping[str, str]) -> Path | None:
    """The default key file when nothing else names a key and it exists.

    Args:
        env: the environment (``os.environ``).

    Returns:
        :func:`default_key_file` if neither ``GANGLION_KEY_FILE`` nor
        ``GANGLION_KEY`` is set and the file exists (whatever its mode: a loose
        mode is then refused loudly by the key loader, never ignored); else None.
    """
    if env.get(_ENV_KEY_FILE) or env.get(_ENV_KEY):
        return None
    path = default_key_file()
    return path if path.exists() else None


def join_target(key_file: Path | None, env: Mapping[str, str]) -> Path:
    """Where ``ganglion join`` writes the key.

    Args:
        key_file: ``--key-file``, if given.
        env: the environment (``os.environ``).

    Returns:
        ``key_file``, else ``GANGLION_KEY_FILE``, else :func:`default_key_file`.
    """
    if key_file is not None:
        return key_file
    named = env.get(_ENV_KEY_FILE)
    return Path(named) if named else default_key_file()


def install_key_file(path: Path, content: bytes, *, force: bool = False) -> Installed:
    """Write a received key file with mode 0600, refusing to replace another key.

    Args:
        path: where to write; missing parent directories are created (mode 0700).
        content: the key file's bytes as the inviter sent them.
        force: replace an existing file that holds other keys.

    Returns:
        What was done (an existing file with the same keys, however spelt, is kept).

    Raises:
        KeyFileError: ``content`` is not a valid key file (checked before it gets
            its name); the file exists with other keys and ``force`` is False;
            or it cannot be written.
    """
    existing = _read_existing(path)
    if existing == content:
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        return Installed.UNCHANGED
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = write_temp_beside(path, content)
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from exc
    try:
        received = _keys_of(tmp)
        if existing is not None:
            if _same_keys(path, received):
                return Installed.UNCHANGED
            if not force:
                raise KeyFileError(
                    f"{path} already holds another network key; pass --force to replace it "
                    f"(nodes that keep the old key will no longer hear this one)")
        _publish(tmp, path, replace=existing is not None)
        fsync_dir(path.parent)
    except FileExistsError:
        raise KeyFileError(f"{path} appeared while the key was being written; "
                           f"run join again (with --force to replace it)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return Installed.REPLACED if existing is not None else Installed.WRITTEN


def _read_existing(path: Path) -> bytes | None:
    """The bytes of an existing key file (at most a little over any valid one), or None."""
    try:
        with path.open("rb") as f:
            return f.read(1 << 16)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise KeyFileError(f"{path} is a directory, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _keys_of(tmp: Path) -> tuple[bytes, ...]:
    """The keys of what arrived: it must load as a key file before it takes the real name."""
    from ganglion.wire.keys import read_keys

    try:
        return read_keys(tmp)
    except KeyFileError as exc:
        raise KeyFileError(f"the inviter sent a key file this node cannot use ({exc}); "
                           f"is ganglion the same version on both?") from None


def _same_keys(path: Path, keys: tuple[bytes, ...]) -> bool:
    """True if the existing file loads and holds exactly ``keys`` (raw or hex, any order of
    comments): then there is nothing to replace."""
    from ganglion.wire.keys import read_keys

    try:
        return read_keys(path) == keys
    except KeyFileError:
        return False


def _publish(tmp: Path, path: Path, *, replace: bool) -> None:
    """Give ``tmp`` its final name: atomically over the old file, or only if none exists."""
    if replace:
        os.replace(tmp, path)
    else:
        os.link(tmp, path)  # fails with FileExistsError instead of overwriting a new arrival
